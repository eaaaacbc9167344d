//! The links file: one link a line, `ID` or `ID product,product`, with `#`
//! comments and blank lines, for fleets too large to list in TOML. Either
//! form may end with `profile=NAME` (e.g. `ID accounts,transactions
//! profile=premium` or `ID profile=free`), which names the link's profile
//! as `profile = "..."` does on `[[links]]`.
//!
//! Parsing is a single pass over the bytes with no regex and no per-line
//! allocation beyond the id, so a million lines take well under a second.
//! Errors never quote the line (see [`parse`]).

use crate::domain::{LinkId, Product, ProductSet};

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkLine {
    /// 1-based line number, for error messages and duplicate reports.
    pub line: usize,
    /// The link id.
    pub id: LinkId,
    /// Products given on the line; `None` means the profile's products.
    pub products: Option<ProductSet>,
    /// `profile=NAME` given on the line (checked against the profiles by
    /// the caller).
    pub profile: Option<String>,
}

/// A bad line: its number and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong and what is allowed.
    pub problem: String,
}

/// `message` with `field` (as `{:?}` quotes it, or bare) replaced by `name`;
/// when the field still shows, a message that names only `name`.
fn without(message: &str, field: &str, name: &str) -> String {
    let out = message
        .replace(&format!(" {field:?}"), "")
        .replace(&format!("{field:?}"), name);
    if field.len() >= 3 && out.contains(field) {
        return format!("{name} is not a valid link id; ids look like mk_eqkWN34UEoa2NxyALG8pcV");
    }
    out
}

/// Parses the whole file; stops at the first bad line. An error names the
/// line number and what is allowed, never the line's content: a
/// `links_file` pointed at the wrong file (`/proc/self/environ`, a file of
/// secrets) must not print it back.
#[cfg(test)]
pub fn parse(text: &str) -> Result<Vec<LinkLine>, LineError> {
    let mut out = Vec::with_capacity(text.len() / 30);
    for (i, raw) in text.lines().enumerate() {
        if let Some(parsed) = parse_line(i + 1, raw)? {
            out.push(parsed);
        }
    }
    Ok(out)
}

/// Parses line number `line` (1-based) of the file, without its line end;
/// `None` for a blank or comment line. The config check reads the file a
/// line at a time through this (issue 16): holding the whole text and every
/// parsed line beside the links was most of a replica's start-up peak with
/// a million links, more than its share of the fleet needs afterwards.
pub fn parse_line(line: usize, raw: &str) -> Result<Option<LinkLine>, LineError> {
    {
        let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
        if content.is_empty() {
            return Ok(None);
        }
        let mut fields = content.split_whitespace();
        let id_field = fields.next().unwrap_or_default();
        let (second, third, fourth) = (fields.next(), fields.next(), fields.next());
        let is_profile = |f: &str| f.starts_with("profile=");
        let (products_field, profile_field) = match (second, third) {
            (Some(s), None) if is_profile(s) => (None, Some(s)),
            pair => pair,
        };
        if fourth.is_some()
            || products_field.is_some_and(is_profile)
            || profile_field.is_some_and(|f| !is_profile(f))
        {
            return Err(LineError {
                line,
                problem: "too many fields; a line is \"ID\" or \"ID product,product\", either followed by \"profile=NAME\" (no spaces inside the product list)".into(),
            });
        }
        let profile = match profile_field.map(|f| &f["profile=".len()..]) {
            Some("") => {
                return Err(LineError {
                    line,
                    problem: "profile= without a name; write profile=NAME with a configured [profiles.NAME]".into(),
                });
            }
            other => other.map(str::to_owned),
        };
        let id = LinkId::parse(id_field).map_err(|e| LineError {
            line,
            problem: without(&e.to_string(), id_field, "the link id (first field)"),
        })?;
        let products = match products_field {
            None => None,
            Some(list) => {
                let mut set = ProductSet::EMPTY;
                for (n, name) in list.split(',').filter(|s| !s.trim().is_empty()).enumerate() {
                    set.insert(Product::parse(name).map_err(|_| LineError {
                        line,
                        problem: format!(
                            "entry {} of the product list (second field) is not a product; allowed: {}",
                            n + 1,
                            Product::ALL.map(Product::as_str).join(", ")
                        ),
                    })?);
                }
                if set.is_empty() {
                    return Err(LineError {
                        line,
                        problem: "empty product list; give at least one product or none at all for [defaults] products".into(),
                    });
                }
                Some(set)
            }
        };
        Ok(Some(LinkLine {
            line,
            id,
            products,
            profile,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Product;

    #[test]
    fn ids_products_comments_and_blank_lines() {
        let text = "# fleet\n\nmk_a\nmk_b accounts,identity  # two products\n   \n";
        let lines = parse(text).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].id.as_str(), "mk_a");
        assert_eq!(lines[0].products, None);
        assert_eq!(lines[1].line, 4);
        assert_eq!(
            lines[1].products,
            Some(ProductSet::of(Product::Accounts).union(ProductSet::of(Product::Identity)))
        );
    }

    #[test]
    fn a_line_may_name_its_profile_after_the_products_or_alone() {
        let lines =
            parse("mk_a accounts profile=premium\nmk_b profile=free\nmk_c identity\n").unwrap();
        assert_eq!(lines[0].profile.as_deref(), Some("premium"));
        assert_eq!(lines[0].products, Some(ProductSet::of(Product::Accounts)));
        assert_eq!(lines[1].profile.as_deref(), Some("free"));
        assert_eq!(lines[1].products, None);
        assert_eq!(lines[2].profile, None);
    }

    #[test]
    fn bad_lines_name_their_number_and_what_is_allowed() {
        let err = parse("mk_a\nmk_b balances\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.problem.contains("allowed: accounts"), "{}", err.problem);
        assert!(!err.problem.contains("balances"), "{}", err.problem);
        let err = parse("mk_a accounts, identity\n").unwrap_err();
        assert!(err.problem.contains("too many fields"), "{}", err.problem);
        let err = parse("mk_a accounts profile=a profile=b\n").unwrap_err();
        assert!(err.problem.contains("too many fields"), "{}", err.problem);
        let err = parse("mk_a profile=\n").unwrap_err();
        assert!(err.problem.contains("profile=NAME"), "{}", err.problem);
        let err = parse("PATH=/usr/bin:/secret\n").unwrap_err();
        assert!(!err.problem.contains("secret"), "{}", err.problem);
        assert!(err.problem.contains("'/'"), "{}", err.problem);
    }
}
