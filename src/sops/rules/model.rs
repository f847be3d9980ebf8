//! The read side: which node is `keys`, which are the creation rules, how aliases and merge
//! keys resolve, and which rule sops picks for a path — the way sops 3.11 does it
//! (`config/config.go`, `parseCreationRuleForFile`):
//!
//! - the path is matched relative to the directory holding `.sops.yaml` (sops makes it
//!   absolute, then strips that directory), so `path_regex` sees `sops/web01.yaml`;
//! - rules are tried in order and the first match wins; a rule without `path_regex` (or an
//!   empty one) matches everything; matching is Go's unanchored `regexp.MatchString`, which
//!   Rust's `Regex::is_match` mirrors (both RE2-style);
//! - a non-empty `key_groups` list wins over the rule's top-level `age`/`pgp`/…, which then
//!   form one group; top-level `age` may be a list or a comma-separated string, a key group's
//!   `age` is a list whose items may themselves hold commas; recipients are trimmed.

use std::collections::HashMap;
use std::sync::Arc;

use regex::Regex;

use super::SopsConfigError;
use super::text::Lines;
use crate::sops::yaml::{Node, NodeKind, Parsed};

/// Aliases of aliases and merge chains deeper than this are refused (they are cycles or
/// abuse, not configuration).
pub(crate) const MAX_DEPTH: usize = 32;

/// Keys of a creation rule that choose keys other than age.
pub(crate) const OTHER_KEY_TYPES: [&str; 7] = ["pgp", "kms", "gcp_kms", "azure_keyvault", "hc_vault_transit_uri", "hckms", "hc_vault"];

pub(crate) struct Model<'a> {
    pub lines: Lines<'a>,
    pub parsed: &'a Parsed,
    /// The document root: a block or flow mapping, or a null scalar for an empty file.
    pub root: &'a Node,
    pub keys: Option<&'a (Node, Node)>,
    pub rules_entry: Option<&'a (Node, Node)>,
    pub rules: Vec<Rule<'a>>,
    /// Every anchor definition in text order.
    pub anchors: Vec<(&'a str, &'a Node)>,
    /// The definitions of each anchor name, in text order (for lookups in O(1) of the file).
    by_name: HashMap<&'a str, Definitions<'a>>,
    /// The rules (indexes, in order) whose `path_regex` is a plain literal, by that literal.
    literals: HashMap<String, Vec<usize>>,
    /// The rules that are not plain literals (real regexes, and rules without `path_regex`,
    /// which match everything), by index, in order.
    dynamic: Vec<usize>,
    /// How many nodes the text holds, aliases counted once.
    pub nodes: usize,
}

pub(crate) struct Rule<'a> {
    pub index: usize,
    /// The item as written in `creation_rules` (possibly an alias).
    pub item: &'a Node,
    /// The mapping it resolves to, when it is one.
    pub map: Option<&'a Node>,
    pub path_regex: Option<String>,
    pub regex: Option<Matcher>,
    /// 1-based.
    pub line: usize,
}

/// How a `path_regex` is matched. A fleet has a rule per host, nearly all of them written
/// `^sops/<host>\.yaml$`: such a pattern means "exactly this path", so it is compared as a
/// string instead of being compiled (compiling a thousand regexes on every parse, and trying
/// each one for every lookup, made a run's cost grow with the size of the fleet).
#[derive(Clone)]
pub(crate) enum Matcher {
    /// `^…$` around characters that are all literal (metacharacters escaped): the unescaped text.
    Literal(String),
    /// Anything else, compiled (or why it does not compile).
    Regex(Arc<Result<Regex, String>>),
}

/// A value found in a mapping, by key or through `<<` merge keys.
#[derive(Clone, Copy)]
pub(crate) struct Found<'a> {
    pub key: &'a Node,
    /// As written in the entry (an alias stays an alias).
    pub raw: &'a Node,
    /// After following aliases.
    pub value: &'a Node,
    /// Found among the mapping's own entries rather than through a merge key.
    pub direct: bool,
}

pub(crate) fn describe(n: &Node) -> &'static str {
    match &n.kind {
        NodeKind::Scalar { .. } if n.is_null() => "empty",
        NodeKind::Scalar { .. } => "a string",
        NodeKind::Alias { .. } => "an alias",
        NodeKind::Mapping { .. } => "a mapping",
        NodeKind::Sequence { .. } => "a list",
    }
}

/// The text a pattern matches when it matches exactly one string: `^`, then characters that
/// are not regex metacharacters or are metacharacters escaped with `\`, then `$`. Both RE2
/// (sops) and Rust's regex read such a pattern as "the whole path equals this text" (`^` and
/// `$` without the `m` flag are the ends of the text).
pub(crate) fn literal_pattern(pattern: &str) -> Option<String> {
    const META: &str = "\\.+*?()|[]{}^$";
    let body = pattern.strip_prefix('^')?.strip_suffix('$')?;
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if META.contains(e) || e == '-' => out.push(e),
                // `\d`, `\b`, `\x41`…, or a trailing `\` (then the `$` was escaped).
                _ => return None,
            },
            c if META.contains(c) => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

impl<'a> Model<'a> {
    pub(crate) fn new(text: &'a str, parsed: &'a Parsed) -> Result<Self, SopsConfigError> {
        let lines = Lines::new(text, &parsed.comments);
        let root = match parsed.documents.as_slice() {
            [root] => root,
            [] => &EMPTY,
            [_, second, ..] => {
                return Err(SopsConfigError::MultipleDocuments { line: second.line + 1, count: parsed.documents.len() });
            }
        };
        let (anchors, by_name, nodes) = index(root)?;
        let mut model = Model {
            lines,
            parsed,
            root,
            keys: None,
            rules_entry: None,
            rules: Vec::new(),
            anchors,
            by_name,
            literals: HashMap::new(),
            dynamic: Vec::new(),
            nodes,
        };
        match &root.kind {
            NodeKind::Mapping { .. } => {}
            _ if root.is_null() => return Ok(model),
            _ => {
                return Err(SopsConfigError::NotAMapping { line: root.line + 1, found: describe(root).into() });
            }
        }
        model.keys = root.entry("keys");
        model.rules_entry = root.entry("creation_rules");
        if let Some((_, raw)) = model.rules_entry {
            let value = model.resolve(raw);
            match &value.kind {
                NodeKind::Sequence { items, .. } => {
                    for (index, item) in items.iter().enumerate() {
                        let rule = model.rule(index, item);
                        match &rule.regex {
                            Some(Matcher::Literal(l)) => {
                                model.literals.entry(l.clone()).or_default().push(index);
                            }
                            _ => model.dynamic.push(index),
                        }
                        model.rules.push(rule);
                    }
                }
                _ if value.is_null() => {}
                _ => {
                    return Err(SopsConfigError::CreationRulesNotAList { line: raw.line + 1, found: describe(value).into() });
                }
            }
        }
        Ok(model)
    }

    fn rule(&self, index: usize, item: &'a Node) -> Rule<'a> {
        let resolved = self.resolve(item);
        let map = matches!(resolved.kind, NodeKind::Mapping { .. }).then_some(resolved);
        let path_regex = map.and_then(|m| self.lookup(m, "path_regex")).and_then(|f| f.value.as_str().map(str::to_string));
        let path_regex = path_regex.filter(|r| !r.is_empty());
        let regex = path_regex.as_ref().map(|r| match literal_pattern(r) {
            Some(l) => Matcher::Literal(l),
            None => Matcher::Regex(Arc::new(Regex::new(r).map_err(|e| e.to_string()))),
        });
        Rule { index, item, map, path_regex, regex, line: item.line + 1 }
    }

    /// Follows aliases to the node they name (the last definition before the alias).
    pub(crate) fn resolve(&self, n: &'a Node) -> &'a Node {
        let mut cur = n;
        for _ in 0..MAX_DEPTH {
            let NodeKind::Alias { name } = &cur.kind else {
                return cur;
            };
            match self.anchor_before(name, cur.span.start) {
                Some(target) => cur = target,
                None => return cur,
            }
        }
        cur
    }

    pub(crate) fn anchor_before(&self, name: &str, before: usize) -> Option<&'a Node> {
        let d = self.by_name.get(name)?;
        d.later.iter().rev().chain(std::iter::once(&d.first)).find(|n| n.span.start < before).copied()
    }

    /// Whether no anchor name is defined twice.
    pub(crate) fn anchors_unique(&self) -> bool {
        self.by_name.values().all(|d| d.later.is_empty())
    }

    /// The last definition of anchor `name`.
    pub(crate) fn anchor(&self, name: &str) -> Option<&'a Node> {
        self.anchor_before(name, usize::MAX)
    }

    /// Whether some alias anywhere names `node`'s anchor (then changing `node` changes every
    /// place that alias stands for).
    pub(crate) fn is_aliased(&self, node: &Node) -> bool {
        let Some(name) = &node.anchor else {
            return false;
        };
        let mut used = false;
        self.root.walk(&mut |n| {
            if let NodeKind::Alias { name: a } = &n.kind {
                used |= a == name && self.anchor_before(a, n.span.start).is_some_and(|t| std::ptr::eq(t, node));
            }
        });
        used
    }

    /// `key` in mapping `map`: its own entries first, then its `<<` merge sources in order.
    pub(crate) fn lookup(&self, map: &'a Node, key: &str) -> Option<Found<'a>> {
        self.lookup_depth(map, key, 0)
    }

    fn lookup_depth(&self, map: &'a Node, key: &str, depth: usize) -> Option<Found<'a>> {
        let NodeKind::Mapping { entries, .. } = &map.kind else {
            return None;
        };
        if let Some((k, v)) = entries.iter().find(|(k, _)| k.as_str() == Some(key)) {
            return Some(Found { key: k, raw: v, value: self.resolve(v), direct: true });
        }
        if depth >= MAX_DEPTH {
            return None;
        }
        for (k, v) in entries {
            if k.as_str() != Some("<<") || k.tag.is_some() {
                continue;
            }
            let source = self.resolve(v);
            let sources: Vec<&'a Node> = match &source.kind {
                NodeKind::Sequence { items, .. } => items.iter().map(|i| self.resolve(i)).collect(),
                _ => vec![source],
            };
            for s in sources {
                if let Some(found) = self.lookup_depth(s, key, depth + 1) {
                    return Some(Found { direct: false, ..found });
                }
            }
        }
        None
    }

    /// The strings a recipient field holds: a scalar split on commas, or a list whose items
    /// are split on commas; trimmed, empty pieces dropped (as sops does).
    pub(crate) fn recipients(&self, value: &'a Node) -> Vec<String> {
        let split = |s: &str| s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect::<Vec<_>>();
        let value = self.resolve(value);
        match &value.kind {
            NodeKind::Scalar { value: v, .. } if !value.is_null() => split(v),
            NodeKind::Sequence { items, .. } => items.iter().filter_map(|i| self.resolve(i).as_str().map(split)).flatten().collect(),
            _ => Vec::new(),
        }
    }

    /// The first rule sops uses for `path` (relative to the `.sops.yaml` directory).
    ///
    /// # Errors
    /// The regex of a rule tried before the match does not compile (sops fails the same way).
    pub(crate) fn rule_for(&self, path: &str) -> Result<Option<&Rule<'a>>, SopsConfigError> {
        let path = normalize(path);
        // The first literal rule for this exact path, then any earlier rule that is a regex.
        let literal = self.literals.get(path).and_then(|v| v.first().copied());
        for &i in &self.dynamic {
            if literal.is_some_and(|l| l < i) {
                break;
            }
            let rule = &self.rules[i];
            if rule.matches(path)? {
                return Ok(Some(rule));
            }
        }
        Ok(literal.map(|i| &self.rules[i]))
    }

    /// The first rule after the one at `after` that is written for `path` alone
    /// ([`Rule::is_specific_to`]): one among the literal rules for exactly this path, or a
    /// regex rule — found without trying every rule of the file.
    pub(crate) fn next_written_for(&self, after: usize, path: &str) -> Option<&Rule<'a>> {
        let path = normalize(path);
        let literal = self.literals.get(path).and_then(|v| v.iter().copied().find(|&i| i > after));
        let dynamic = self
            .dynamic
            .iter()
            .copied()
            .filter(|&i| i > after && literal.is_none_or(|l| i < l))
            .find(|&i| self.rules[i].is_specific_to(path));
        dynamic.or(literal).map(|i| &self.rules[i])
    }

    /// The age recipients of each key group of the rule sops uses for `path` (see
    /// [`super::SopsConfig::recipients_for`]).
    pub(crate) fn recipients_for(&self, path: &str) -> Option<Vec<Vec<String>>> {
        let rule = self.rule_for(path).ok()??;
        Some(self.groups(rule).into_iter().map(|g| g.age).collect())
    }

    /// The rule's key groups: `(age recipients, other key types present)` per group.
    pub(crate) fn groups(&self, rule: &Rule<'a>) -> Vec<Group<'a>> {
        let Some(map) = rule.map else {
            return Vec::new();
        };
        if let Some(kg) = self.lookup(map, "key_groups")
            && let NodeKind::Sequence { items, .. } = &kg.value.kind
            && !items.is_empty()
        {
            return items.iter().map(|g| self.group(self.resolve(g), 0)).collect();
        }
        vec![self.group(map, 0)]
    }

    fn group(&self, map: &'a Node, depth: usize) -> Group<'a> {
        let mut g = Group { map: Some(map), age: Vec::new(), pgp: Vec::new(), other: Vec::new() };
        if let Some(f) = self.lookup(map, "age") {
            g.age = self.recipients(f.raw);
        }
        if let Some(f) = self.lookup(map, "pgp") {
            g.pgp = self.recipients(f.raw);
        }
        for kind in OTHER_KEY_TYPES.iter().skip(1) {
            if self.lookup(map, kind).is_some_and(|f| !f.value.is_null()) {
                g.other.push((*kind).to_string());
            }
        }
        // `merge:` folds nested groups into this one (sops' keyGroup.Merge).
        if let Some(NodeKind::Sequence { items, .. }) = self.lookup(map, "merge").map(|f| &f.value.kind)
            && depth < MAX_DEPTH
        {
            for item in items {
                let sub = self.group(self.resolve(item), depth + 1);
                g.age.extend(sub.age);
                g.pgp.extend(sub.pgp);
                g.other.extend(sub.other);
            }
        }
        g
    }
}

pub(crate) struct Group<'a> {
    pub map: Option<&'a Node>,
    pub age: Vec<String>,
    pub pgp: Vec<String>,
    pub other: Vec<String>,
}

impl Rule<'_> {
    /// Whether sops would pick this rule for `path` if no earlier rule matched.
    pub(crate) fn matches(&self, path: &str) -> Result<bool, SopsConfigError> {
        match &self.regex {
            Some(Matcher::Literal(l)) => Ok(l == normalize(path)),
            Some(Matcher::Regex(re)) => match (&self.path_regex, re.as_ref()) {
                (_, Ok(re)) => Ok(re.is_match(normalize(path))),
                (r, Err(e)) => {
                    Err(SopsConfigError::InvalidRegex { line: self.line, regex: r.clone().unwrap_or_default(), reason: e.clone() })
                }
            },
            None => Ok(true),
        }
    }

    /// Why the rule's `path_regex` does not compile, when it does not.
    pub(crate) fn regex_error(&self) -> Option<&str> {
        match &self.regex {
            Some(Matcher::Regex(re)) => re.as_ref().as_ref().err().map(String::as_str),
            _ => None,
        }
    }

    /// Whether the rule is written for `path` alone: it has a `path_regex` that matches
    /// `path` but none of a few siblings (another file in the same directory, the name with
    /// a prefix or a suffix added). `.*`, `\.yaml$`, `^sops/` or a missing `path_regex` are
    /// not specific; `^sops/web01\.yaml$` and `sops/web01.yaml$` are.
    pub(crate) fn is_specific_to(&self, path: &str) -> bool {
        let path = normalize(path);
        let probe = |p: &str| self.matches(p).unwrap_or(true);
        if self.path_regex.is_none() || !self.matches(path).unwrap_or(false) {
            return false;
        }
        let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
        let (stem, ext) = name.rsplit_once('.').map_or((name, String::new()), |(s, e)| (s, format!(".{e}")));
        let join = |n: String| {
            if dir.is_empty() { n } else { format!("{dir}/{n}") }
        };
        ![join(format!("hostsmith-probe{ext}")), join(format!("{stem}-hostsmith-probe{ext}")), join(format!("hostsmith-probe-{stem}{ext}"))]
            .iter()
            .any(|p| probe(p))
    }
}

/// sops never sees a leading `./` (it strips an absolute directory prefix).
pub(crate) fn normalize(path: &str) -> &str {
    path.trim_start_matches("./")
}

/// The root of a text with no document at all (empty, or only comments).
static EMPTY: Node = Node {
    kind: NodeKind::Scalar { value: String::new(), style: crate::sops::yaml::ScalarStyle::Plain },
    span: 0..0,
    line: 0,
    col: 0,
    anchor: None,
    tag: None,
};

/// The first key of a mapping written a second time: the key, its line, the line of the
/// first (1-based).
fn first_duplicate(entries: &[(Node, Node)]) -> Option<(&str, usize, usize)> {
    if entries.len() <= 8 {
        // Most mappings hold a few keys: comparing them costs less than a set per mapping.
        for (i, (k, _)) in entries.iter().enumerate() {
            let Some(name) = plain_key(k) else { continue };
            if let Some((first, _)) = entries[..i].iter().find(|(f, _)| plain_key(f) == Some(name)) {
                return Some((name, k.line + 1, first.line + 1));
            }
        }
        return None;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (k, _) in entries {
        let Some(name) = plain_key(k) else { continue };
        if let Some(first) = seen.insert(name, k.line + 1) {
            return Some((name, k.line + 1, first));
        }
    }
    None
}

/// A mapping key as a duplicate: its text, unless it is a merge key (`<<`).
fn plain_key(k: &Node) -> Option<&str> {
    k.as_str().filter(|k| *k != "<<")
}

/// The definitions of one anchor name, in text order. Nearly every name is defined once,
/// so the first is held apart and a fleet's 10,000 anchors cost no list each.
struct Definitions<'a> {
    first: &'a Node,
    later: Vec<&'a Node>,
}

/// Every anchor definition in text order, the definitions by name, and the node count.
type AnchorIndex<'a> = (Vec<(&'a str, &'a Node)>, HashMap<&'a str, Definitions<'a>>, usize);

/// Indexes the anchors and counts the nodes in one walk of the tree, which also finds the
/// first mapping key written twice in one mapping (merge keys aside): sops' YAML reader
/// refuses such a file, and a reader that took either value would disagree with someone.
fn index(root: &Node) -> Result<AnchorIndex<'_>, SopsConfigError> {
    let mut anchors = Vec::new();
    let mut by_name: HashMap<&str, Definitions<'_>> = HashMap::new();
    let mut nodes = 0;
    let mut duplicate = None;
    root.walk(&mut |n| {
        nodes += 1;
        if let Some(a) = &n.anchor {
            anchors.push((a.as_str(), n));
            match by_name.entry(a.as_str()) {
                std::collections::hash_map::Entry::Occupied(mut d) => d.get_mut().later.push(n),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Definitions { first: n, later: Vec::new() });
                }
            }
        }
        if let NodeKind::Mapping { entries, .. } = &n.kind
            && duplicate.is_none()
            && let Some((key, line, first)) = first_duplicate(entries)
        {
            duplicate = Some(SopsConfigError::DuplicateKey { key: key.escape_debug().to_string(), line, first });
        }
    });
    match duplicate {
        Some(e) => Err(e),
        None => Ok((anchors, by_name, nodes)),
    }
}
