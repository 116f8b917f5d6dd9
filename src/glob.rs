//! `*`-wildcard matching for names in specs and the model catalog (`tool:*`, `gpt-4o*`).
//!
//! Only `*` is special (any run of characters, including none); everything else matches
//! itself. Never allocates.

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` seen and the text position it was tried at: on a mismatch we
    // let that star swallow one more character and retry (linear-time greedy matching).
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn matches_like_a_shell_star() {
        let cases = [
            ("tool:*", "tool:update_address", true),
            ("tool:*", "model", false),
            ("gpt-4o*", "gpt-4o-mini-2024", true),
            ("claude-*-haiku*", "claude-3-5-haiku-2024", true),
            ("claude-*-haiku*", "claude-3-5-sonnet", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("a*b*c", "abbbc", true),
            ("a*b*c", "acb", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "{p} ~ {t}");
        }
    }
}
