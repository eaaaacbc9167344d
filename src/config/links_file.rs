//! The links file: one link a line, `ID` or `ID product,product`, with `#`
//! comments and blank lines, for fleets too large to list in TOML.
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
    /// Products given on the line; `None` means `[defaults] products`.
    pub products: Option<ProductSet>,
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
pub fn parse(text: &str) -> Result<Vec<LinkLine>, LineError> {
    let mut out = Vec::with_capacity(text.len() / 30);
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
        if content.is_empty() {
            continue;
        }
        let mut fields = content.split_whitespace();
        let id_field = fields.next().unwrap_or_default();
        let products_field = fields.next();
        if fields.next().is_some() {
            return Err(LineError {
                line,
                problem: "more than two fields; a line is \"ID\" or \"ID product,product\" (no spaces inside the product list)".into(),
            });
        }
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
        out.push(LinkLine { line, id, products });
    }
    Ok(out)
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
    fn bad_lines_name_their_number_and_what_is_allowed() {
        let err = parse("mk_a\nmk_b balances\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.problem.contains("allowed: accounts"), "{}", err.problem);
        assert!(!err.problem.contains("balances"), "{}", err.problem);
        let err = parse("mk_a accounts, identity\n").unwrap_err();
        assert!(
            err.problem.contains("more than two fields"),
            "{}",
            err.problem
        );
        let err = parse("PATH=/usr/bin:/secret\n").unwrap_err();
        assert!(!err.problem.contains("secret"), "{}", err.problem);
        assert!(err.problem.contains("'/'"), "{}", err.problem);
    }
}
