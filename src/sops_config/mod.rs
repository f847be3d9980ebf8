//! The `.sops.yaml` reader and in-place editor (being written).

#[cfg(test)]
mod scratch {
    fn show(text: &str) {
        match crate::yaml::parse(text) {
            Ok(p) => {
                for d in &p.documents {
                    d.walk(&mut |n| {
                        let k = match &n.kind {
                            crate::yaml::NodeKind::Scalar { value, style } => format!("S {value:?} {style:?}"),
                            crate::yaml::NodeKind::Alias { name } => format!("A {name}"),
                            crate::yaml::NodeKind::Mapping { flow, .. } => format!("M flow={flow}"),
                            crate::yaml::NodeKind::Sequence { flow, .. } => format!("Q flow={flow}"),
                        };
                        eprintln!("{:?} l{} c{} anchor={:?} {k} text={:?}", n.span, n.line, n.col, n.anchor, &text[n.span.clone()]);
                    });
                }
                eprintln!("comments {:?}", p.comments);
            }
            Err(e) => eprintln!("ERR {e}"),
        }
        eprintln!("----");
    }
    #[test]
    fn scratch() {
        show("keys:\n  - &users:\n    - &ta age1x # c\n  - &hosts:\n    - &g age1y\ncreation_rules:\n- path_regex: a$\n  key_groups:\n  - age:\n    - *ta\n");
        show("keys:\r\n  - &a age1x\r\n  - &b 'age1y'\r\ncreation_rules:\r\n  - age: >-\r\n      age1a,\r\n      age1b\r\n\r\n    pgp: x\r\n");
        show("a: >-\n  x,\n  y\n\nb: |\n  z\n  w\nc: \"q\"\nd: [ &x 1 , *x ]\ne:\nf: []\ng: {}\n");
        show("-\n  a: 1\n- &r\n  b: 2\n-   c: 3\n");
        show("  keys:\n    - &a x\n  rules:\n    - <<: *a\n");
        show("a: &m {x: 1}\nb:\n  <<: *m\n  y: 2\n");
        show("a: 1\n---\nb: 2\n");
        show("");
        show("# only comment\n");
        show("a: &x [*x]\n");
    }
}
