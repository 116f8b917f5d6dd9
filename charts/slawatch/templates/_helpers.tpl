{{/* Names, labels and the checks every template shares. */}}

{{- define "slawatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "slawatch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "slawatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "slawatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "slawatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "slawatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret holding the API token and the SMTP password: the chart's own or an existing one. */}}
{{- define "slawatch.secretName" -}}
{{- default (include "slawatch.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{/* `--listen`: IPv6 addresses in brackets. */}}
{{- define "slawatch.listen" -}}
{{- if contains ":" .Values.api.listenAddress }}
{{- printf "[%s]:%d" .Values.api.listenAddress (int .Values.api.port) }}
{{- else }}
{{- printf "%s:%d" .Values.api.listenAddress (int .Values.api.port) }}
{{- end }}
{{- end }}

{{/* `http`, or `https` with `tls.enabled`. */}}
{{- define "slawatch.scheme" -}}
{{- ternary "https" "http" (and .Values.tls.enabled true) }}
{{- end }}

{{/*
Refuses values slawatch would refuse at start-up, so a bad install fails at `helm install`, not
in a crash loop. slawatch will not listen beyond loopback without a token (src/api/mod.rs).
*/}}
{{- define "slawatch.checks" -}}
{{- $addr := .Values.api.listenAddress }}
{{- $loopback := or (hasPrefix "127." $addr) (eq $addr "::1") }}
{{- if $loopback }}
{{- fail (printf "api.listenAddress %s is loopback: the kubelet's probes and the Service could not reach the API; use 0.0.0.0 or ::" $addr) }}
{{- end }}
{{- if and (not .Values.auth.apiToken) (not .Values.auth.existingSecret) }}
{{- fail (printf "the API listens on %s, beyond loopback, which needs a bearer token: set auth.apiToken or auth.existingSecret (a Secret with key %q)" (include "slawatch.listen" .) .Values.auth.apiTokenKey) }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName: a kubernetes.io/tls Secret with tls.crt and tls.key" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (eq (toString .Values.kafka.topology) "single") }}
{{- fail (printf "replicaCount %d needs kafka.topology partitioned: with topology single a second instance in the group sees only part of every key" (int .Values.replicaCount)) }}
{{- end }}
{{- if not .Values.kafka.brokers }}
{{- fail "kafka.brokers is empty: slawatch run in the cluster consumes session records from Kafka" }}
{{- end }}
{{- if and .Values.smtp.user (not .Values.smtp.url) }}
{{- fail "smtp.user is set but smtp.url is empty" }}
{{- end }}
{{- if and .Values.smtp.user (not .Values.auth.smtpPassword) (not .Values.auth.existingSecret) }}
{{- fail "smtp.user is set: set auth.smtpPassword or auth.existingSecret (a Secret with the SMTP password)" }}
{{- end }}
{{- end }}

{{/*
Spec files as YAML (file name → text): the given ones, else the examples shipped with the
chart. slawatch loads `*.yaml` from the specs directory, and a ConfigMap key allows
[-._a-zA-Z0-9] only.
*/}}
{{- define "slawatch.specFiles" -}}
{{- $files := dict }}
{{- if .Values.specs }}
{{- range $name, $text := .Values.specs }}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+\\.yaml$" $name) }}
{{- fail (printf "specs: file name %q must match [-._a-zA-Z0-9]+ and end in .yaml" $name) }}
{{- end }}
{{- $_ := set $files $name (toString $text) }}
{{- end }}
{{- else }}
{{- range $path, $_ := .Files.Glob "files/specs/*.yaml" }}
{{- $_ := set $files (base $path) ($.Files.Get $path) }}
{{- end }}
{{- end }}
{{- toYaml $files }}
{{- end }}
