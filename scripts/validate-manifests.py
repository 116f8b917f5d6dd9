#!/usr/bin/env python3
"""Validate rendered Kubernetes manifests against the Kubernetes JSON schemas.

usage: validate-manifests.py [-k VERSION]... [--crd CRD.yaml]... MANIFEST.yaml...

Every document of every MANIFEST (multi-document YAML, e.g. `helm template` output) is checked
strictly (unknown fields are errors, as `kubectl apply --validate=strict` has them):

  * built-in kinds with kubernetes-validate, whose bundled schemas need no network, against
    each Kubernetes version given with -k (default: the newest it knows);
  * custom resources against the openAPIV3Schema of their CustomResourceDefinition given with
    --crd, with `additionalProperties: false` added wherever the schema lists properties and
    does not say x-kubernetes-preserve-unknown-fields (what the API server's strict field
    validation rejects).

A kind that neither knows is an error, never skipped. Prints one line per document and version:
`ok <version> <kind>/<name>` or `invalid <version> <kind>/<name>: <path>: <message>`, and exits
1 if any document is invalid or there is no document at all, 2 on bad usage.

Needs kubernetes-validate (and the PyYAML and jsonschema it brings) in the Python running it:
scripts/install-deps.sh installs them into .tools/venv.
"""

import argparse
import copy
import sys

import jsonschema
import kubernetes_validate
import yaml


def load_documents(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def strict(schema):
    """The schema with unknown fields forbidden, as the API server's strict validation has it."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_schemas(paths):
    """(apiVersion, kind) → strict JSON schema, from CustomResourceDefinition files."""
    schemas = {}
    for path in paths:
        for crd in load_documents(path):
            if crd.get("kind") != "CustomResourceDefinition":
                raise SystemExit(f"{path}: not a CustomResourceDefinition")
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                schemas[(f"{group}/{version['name']}", kind)] = strict(schema)
    return schemas


def name_of(doc):
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", "--kubernetes-version", action="append", dest="versions")
    parser.add_argument("--crd", action="append", default=[])
    parser.add_argument("manifests", nargs="+")
    args = parser.parse_args()
    versions = args.versions or [kubernetes_validate.latest_version()]
    custom = crd_schemas(args.crd)

    documents = 0
    invalid = 0
    for path in args.manifests:
        for doc in load_documents(path):
            documents += 1
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key in custom:
                errors = sorted(
                    jsonschema.Draft7Validator(custom[key]).iter_errors(doc),
                    key=lambda e: list(e.path),
                )
                for e in errors:
                    path_ = ".".join(str(p) for p in e.path)
                    print(f"invalid crd {name_of(doc)}: {path_}: {e.message}")
                if errors:
                    invalid += 1
                else:
                    print(f"ok crd {name_of(doc)}")
                continue
            for version in versions:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                    print(f"ok {version} {name_of(doc)}")
                except kubernetes_validate.ValidationError as e:
                    path_ = ".".join(str(p) for p in e.path)
                    print(f"invalid {version} {name_of(doc)}: {path_}: {e.message}")
                    invalid += 1
                except kubernetes_validate.SchemaNotFoundError as e:
                    print(f"invalid {version} {name_of(doc)}: {e.message} (and no --crd for it)")
                    invalid += 1
    if documents == 0:
        print("no document to validate")
        return 1
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
