//! The firewall, from `nft -j list ruleset` (nftables' JSON; UFW and iptables-nft write nftables
//! rules too): the input hook's default policy and which inbound accepts there are, and the
//! output and forward hooks' defaults (the seed denies both).

use serde_json::Value;

/// What the ruleset says about inbound traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inbound {
    /// Base chains on the input hook: (family table/chain, policy).
    pub input_chains: Vec<(String, String)>,
    /// Whether what no rule accepts is dropped, for IPv4 and IPv6 alike: some input chain of
    /// each family drops by default (policy drop, or a final unconditional drop/reject). A
    /// packet must pass every base chain on the hook, so one such chain decides; other
    /// chains' accepts (Docker's, say) open nothing past it.
    pub default_drop: bool,
    /// Accept rules that are not limited to loopback, the WireGuard interface or replies:
    /// (chain, what they match), e.g. ("inet filter input", "tcp dport 22").
    pub open_accepts: Vec<(String, String)>,
    /// UDP ports accepted from anywhere (the WireGuard port should be one).
    pub udp_ports_accepted: Vec<u16>,
    /// The output hook's default.
    pub output: HookDefault,
    /// The forward hook's default.
    pub forward: HookDefault,
}

/// A hook's base chains and whether what no rule accepts is dropped there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookDefault {
    /// (family table chain, policy).
    pub chains: Vec<(String, String)>,
    /// Some base chain on the hook drops by default (policy drop, or a final unconditional
    /// drop or reject): a packet must pass every base chain, so one decides.
    pub drops: bool,
}

/// The default of `hook`'s base chains.
fn hook_default(items: &[Value], hook: &str) -> HookDefault {
    let mut result = HookDefault::default();
    for chain in items.iter().filter_map(|i| i.get("chain")) {
        if chain["hook"].as_str() != Some(hook) {
            continue;
        }
        let policy = chain["policy"].as_str().unwrap_or("accept").to_owned();
        let last_verdict = items
            .iter()
            .filter_map(|i| i.get("rule"))
            .rfind(|r| {
                r["family"] == chain["family"]
                    && r["table"] == chain["table"]
                    && r["chain"] == chain["name"]
            })
            .map(|r| r["expr"].as_array().cloned().unwrap_or_default());
        let final_drop = last_verdict.is_some_and(|expr| {
            !expr.iter().any(|e| e.get("match").is_some())
                && expr
                    .iter()
                    .any(|e| e.get("drop").is_some() || e.get("reject").is_some())
        });
        result.drops |= policy == "drop" || final_drop;
        result.chains.push((chain_id(chain), policy));
    }
    result
}

fn chain_id(c: &Value) -> String {
    format!(
        "{} {} {}",
        c["family"].as_str().unwrap_or("?"),
        c["table"].as_str().unwrap_or("?"),
        c["name"].as_str().unwrap_or("?")
    )
}

/// A `match` expression's left side as words: `meta iifname`, `tcp dport`, `ct state`.
fn left_words(left: &Value) -> String {
    if let Some(meta) = left.get("meta") {
        return format!("meta {}", meta["key"].as_str().unwrap_or("?"));
    }
    if let Some(payload) = left.get("payload") {
        return format!(
            "{} {}",
            payload["protocol"].as_str().unwrap_or("?"),
            payload["field"].as_str().unwrap_or("?")
        );
    }
    if let Some(ct) = left.get("ct") {
        return format!("ct {}", ct["key"].as_str().unwrap_or("?"));
    }
    left.to_string()
}

/// Ports in a match's right side: a number, a set of numbers, or a range.
fn ports(right: &Value) -> Vec<u16> {
    let one = |v: &Value| v.as_u64().and_then(|n| u16::try_from(n).ok());
    match right {
        Value::Number(_) => one(right).into_iter().collect(),
        Value::Object(o) if o.contains_key("set") => o["set"]
            .as_array()
            .map(|s| s.iter().filter_map(one).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Judge the ruleset's input chains. `trusted_ifaces` are loopback and the WireGuard interface.
pub fn inbound(ruleset: &Value, trusted_ifaces: &[&str]) -> Inbound {
    let items = ruleset["nftables"].as_array().cloned().unwrap_or_default();
    let mut result = Inbound::default();
    // Per chain: (family, drops by default, open accepts, udp ports accepted).
    type Judged = (String, bool, Vec<(String, String)>, Vec<u16>);
    let mut judged: Vec<Judged> = Vec::new();
    for chain in items.iter().filter_map(|i| i.get("chain")) {
        if chain["hook"].as_str() != Some("input") {
            continue;
        }
        let id = chain_id(chain);
        let policy = chain["policy"].as_str().unwrap_or("accept").to_owned();
        let rules: Vec<&Value> = items
            .iter()
            .filter_map(|i| i.get("rule"))
            .filter(|r| {
                r["family"] == chain["family"]
                    && r["table"] == chain["table"]
                    && r["chain"] == chain["name"]
            })
            .collect();
        let mut final_drop = false;
        let mut accepts_all = false;
        let mut open = Vec::new();
        let mut udp_ports = Vec::new();
        for rule in &rules {
            let expr = rule["expr"].as_array().cloned().unwrap_or_default();
            let verdict = expr.iter().find_map(|e| {
                ["accept", "drop", "reject"]
                    .into_iter()
                    .find(|v| e.get(*v).is_some())
            });
            // (left side in words, operator, right side)
            let matches: Vec<(String, String, Value)> = expr
                .iter()
                .filter_map(|e| e.get("match"))
                .map(|m| {
                    (
                        left_words(&m["left"]),
                        m["op"].as_str().unwrap_or("==").to_owned(),
                        m["right"].clone(),
                    )
                })
                .collect();
            match verdict {
                // Rules are evaluated in order: a catch-all drop after a catch-all accept is
                // never reached.
                Some("drop" | "reject") if matches.is_empty() && !accepts_all => final_drop = true,
                Some("accept") if matches.is_empty() && !final_drop => {
                    accepts_all = true;
                    open.push((id.clone(), "everything".into()));
                }
                Some("accept") => {
                    // Only an equality (or set membership) narrows: `iifname != "lo"` opens.
                    let trusted = matches.iter().any(|(left, op, right)| {
                        matches!(op.as_str(), "==" | "in")
                            && ((left == "meta iifname" || left == "meta iif")
                                && right.as_str().is_some_and(|i| trusted_ifaces.contains(&i))
                                || left == "ct state"
                                    && !right.to_string().contains("new")
                                    && !right.to_string().contains("invalid"))
                    });
                    if trusted {
                        continue;
                    }
                    let mut words = Vec::new();
                    for (left, op, right) in &matches {
                        words.push(if op == "==" {
                            format!("{left} {right}")
                        } else {
                            format!("{left} {op} {right}")
                        });
                        if left == "udp dport" {
                            udp_ports.extend(ports(right));
                        }
                    }
                    let udp_only = matches.iter().any(|(l, _, _)| l == "udp dport")
                        && !matches.iter().any(|(l, _, _)| l == "tcp dport");
                    // The UDP port accepts are judged against WireGuard's port by the caller.
                    if !udp_only {
                        open.push((id.clone(), words.join(" ")));
                    }
                }
                _ => {}
            }
        }
        let family = chain["family"].as_str().unwrap_or("?").to_owned();
        // An unconditional accept before any catch-all drop lets everything in, whatever the
        // policy says.
        judged.push((
            family,
            (policy == "drop" || final_drop) && !accepts_all,
            open,
            udp_ports,
        ));
        result.input_chains.push((id, policy));
    }
    let drops = |fam: &str| {
        judged
            .iter()
            .any(|(f, d, ..)| *d && (f == fam || f == "inet"))
    };
    result.default_drop = drops("ip") && drops("ip6");
    // The accepts that matter are those of the chains that decide (drop by default); with none,
    // every chain's accepts are what there is.
    let deciding = judged.iter().any(|(_, d, ..)| *d);
    for (_, drop, open, udp) in judged {
        if drop || !deciding {
            result.open_accepts.extend(open);
            result.udp_ports_accepted.extend(udp);
        }
    }
    result.udp_ports_accepted.sort_unstable();
    result.udp_ports_accepted.dedup();
    result.output = hook_default(&items, "output");
    result.forward = hook_default(&items, "forward");
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(policy: &str) -> Value {
        json!({"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1,
                         "type": "filter", "hook": "input", "prio": 0, "policy": policy}})
    }

    fn rule(expr: Value) -> Value {
        json!({"rule": {"family": "inet", "table": "filter", "chain": "input", "handle": 2, "expr": expr}})
    }

    #[test]
    fn a_drop_policy_with_loopback_replies_and_the_wireguard_port_is_tight() {
        let set = json!({"nftables": [
            {"metainfo": {"version": "1.0.6"}},
            chain("drop"),
            rule(json!([{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}}, {"accept": null}])),
            rule(json!([{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}])),
            rule(json!([{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 51820}}, {"accept": null}])),
            rule(json!([{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "wg0"}}, {"accept": null}])),
        ]});
        let i = inbound(&set, &["lo", "wg0"]);
        assert!(i.default_drop);
        assert!(i.open_accepts.is_empty(), "{i:?}");
        assert_eq!(i.udp_ports_accepted, vec![51820]);
    }

    #[test]
    fn an_accept_policy_no_chain_and_open_ports_are_seen() {
        let open = json!({"nftables": [chain("accept"),
            rule(json!([{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}, {"accept": null}]))]});
        let i = inbound(&open, &["lo", "wg0"]);
        assert!(!i.default_drop);
        assert_eq!(i.open_accepts.len(), 1);
        assert!(i.open_accepts[0].1.contains("tcp dport 22"), "{i:?}");
        let none = inbound(&json!({"nftables": [{"metainfo": {}}]}), &["lo"]);
        assert!(none.input_chains.is_empty() && !none.default_drop);
        // A final unconditional drop makes an accept policy a drop.
        let ufw_like = json!({"nftables": [chain("accept"), rule(json!([{"drop": null}]))]});
        assert!(inbound(&ufw_like, &["lo"]).default_drop);
    }

    #[test]
    fn negations_do_not_narrow_and_a_catch_all_accept_opens_the_chain() {
        let not_lo = json!({"nftables": [chain("drop"),
            rule(json!([{"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}, {"accept": null}]))]});
        let i = inbound(&not_lo, &["lo", "wg0"]);
        assert_eq!(i.open_accepts.len(), 1, "{i:?}");
        assert!(i.open_accepts[0].1.contains("!="), "{i:?}");
        let accept_all = json!({"nftables": [chain("drop"), rule(json!([{"accept": null}])),
            rule(json!([{"drop": null}]))]});
        let i = inbound(&accept_all, &["lo"]);
        assert!(!i.default_drop, "{i:?}");
        assert_eq!(i.open_accepts[0].1, "everything");
    }

    #[test]
    fn one_dropping_chain_decides_and_other_chains_accepts_open_nothing() {
        // Docker (iptables-nft) leaves an accept-policy INPUT chain in `ip filter`; the owner's
        // `inet` chain drops: a packet must pass both, so it is dropped.
        let docker = json!({"chain": {"family": "ip", "table": "filter", "name": "INPUT",
            "hook": "input", "policy": "accept"}});
        let docker_rule = json!({"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}}, {"accept": null}]}});
        let set = json!({"nftables": [docker, docker_rule, chain("drop")]});
        let i = inbound(&set, &["lo"]);
        assert!(i.default_drop, "{i:?}");
        assert!(i.open_accepts.is_empty(), "{i:?}");
        // Only IPv4 dropped: IPv6 is open.
        let v4_only = json!({"nftables": [{"chain": {"family": "ip", "table": "f", "name": "in",
            "hook": "input", "policy": "drop"}}]});
        assert!(!inbound(&v4_only, &["lo"]).default_drop);
    }

    #[test]
    fn output_and_forward_defaults_are_read_like_the_input_policy() {
        let set = json!({"nftables": [
            {"chain": {"family": "inet", "table": "filter", "name": "output", "hook": "output", "policy": "accept"}},
            {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "hook": "forward", "policy": "drop"}},
        ]});
        let i = inbound(&set, &["lo"]);
        assert!(!i.output.drops);
        assert_eq!(
            i.output.chains,
            vec![("inet filter output".to_owned(), "accept".to_owned())]
        );
        assert!(i.forward.drops);
        // A final unconditional reject is a default deny too (UFW writes its policy that way).
        let ufw = json!({"nftables": [
            {"chain": {"family": "inet", "table": "f", "name": "out", "hook": "output", "policy": "accept"}},
            {"rule": {"family": "inet", "table": "f", "chain": "out", "expr": [{"reject": null}]}},
        ]});
        assert!(inbound(&ufw, &["lo"]).output.drops);
        assert!(
            inbound(&json!({"nftables": []}), &["lo"])
                .forward
                .chains
                .is_empty()
        );
    }
}
