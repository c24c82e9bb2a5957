//! vaultd.toml(5), the man page of the configuration file, from the one list of keys the
//! parser walks ([`SCHEMA`]).

use crate::SCHEMA;

/// vaultd.toml(5) in roff, one entry per key of [`SCHEMA`], in its order.
pub fn man_page() -> String {
    // roff: a backslash is written "\e"; a line starting with "." or "'" is a request.
    let esc = |t: &str| {
        let t = t.replace('\\', "\\e").replace('-', "\\-");
        if t.starts_with('.') || t.starts_with('\'') {
            format!("\\&{t}")
        } else {
            t
        }
    };
    let mut out = String::from(
        ".TH VAULTD.TOML 5 \"\" \"vaultd\" \"File formats\"\n\
         .SH NAME\nvaultd.toml \\- vaultd's configuration\n\
         .SH SYNOPSIS\n/etc/vaultd/vaultd.toml\n\
         .SH DESCRIPTION\n\
         A TOML file. Every key is optional; an unknown key, a wrong type or a value out of range \
         is refused with the file, the line and the dotted key, and vaultd keeps running on the \
         configuration it has (or does not start). \\fBvaultd \\-\\-check\\-config\\fR checks a file.\n",
    );
    let mut table = "";
    for key in SCHEMA {
        let (section, _) = key.key.split_once('.').unwrap_or((key.key, ""));
        if section != table {
            table = section;
            out.push_str(&format!(".SH [{}]\n", esc(section)));
        }
        out.push_str(&format!(
            ".TP\n\\fB{}\\fR (\\fI{}\\fR; default {}; {})\n{}\n",
            esc(key.key),
            esc(key.kind),
            esc(&key.default.to_string()),
            esc(&key.range.to_string()),
            esc(key.doc)
        ));
    }
    out.push_str(".SH SEE ALSO\n\\fBvaultd\\fR(8), \\fBvaultctl\\fR(1)\n");
    out
}
