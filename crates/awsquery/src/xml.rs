//! A minimal XML writer for responses (elements and escaped text only): EC2's lists are
//! `<item>` elements ([`Xml::list`]), the query protocol's `<member>` ([`Xml::members`]).

/// Builds an XML document as a string.
#[derive(Debug, Default)]
pub struct Xml {
    out: String,
}

/// Escapes text for element content.
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    push_escaped(&mut s, text);
    s
}

/// Appends `text` to `out`, escaped; runs without special characters are copied whole.
fn push_escaped(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&apos;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

impl Xml {
    /// An empty document body.
    pub fn new() -> Self {
        Self::default()
    }

    /// `<name>text</name>`.
    pub fn text(&mut self, name: &str, text: &str) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        push_escaped(&mut self.out, text);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// `<name>text</name>` if `text` is present.
    pub fn opt(&mut self, name: &str, text: Option<impl ToString>) -> &mut Self {
        if let Some(t) = text {
            self.text(name, &t.to_string());
        }
        self
    }

    /// `<name>` … `</name>` around whatever `body` writes.
    pub fn elem(&mut self, name: &str, body: impl FnOnce(&mut Self)) -> &mut Self {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        body(self);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self
    }

    /// `<name><item>…</item>…</name>`, one item per element of `items`.
    pub fn list<T>(
        &mut self,
        name: &str,
        items: &[T],
        mut item: impl FnMut(&mut Self, &T),
    ) -> &mut Self {
        self.elem(name, |x| {
            for i in items {
                x.elem("item", |x| item(x, i));
            }
        })
    }

    /// `<name><member>…</member>…</name>`, one member per element of `items` (the query
    /// protocol's lists).
    pub fn members<T>(
        &mut self,
        name: &str,
        items: &[T],
        mut member: impl FnMut(&mut Self, &T),
    ) -> &mut Self {
        self.elem(name, |x| {
            for i in items {
                x.elem("member", |x| member(x, i));
            }
        })
    }

    /// `<name><member>text</member>…</name>`.
    pub fn strings(&mut self, name: &str, items: &[String]) -> &mut Self {
        self.members(name, items, |x, s| {
            x.text_only(s);
        })
    }

    /// Escaped text with no element around it.
    pub fn text_only(&mut self, text: &str) -> &mut Self {
        push_escaped(&mut self.out, text);
        self
    }

    /// Already-serialized XML, appended as is.
    pub fn raw(&mut self, xml: &str) -> &mut Self {
        self.out.push_str(xml);
        self
    }

    /// An EC2 `tagSet` list.
    pub fn tags(&mut self, tags: &[(String, String)]) -> &mut Self {
        self.list("tagSet", tags, |x, (k, v)| {
            x.text("key", k).text("value", v);
        })
    }

    /// The document so far.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_nests() {
        let mut x = Xml::new();
        x.elem("a", |x| {
            x.text("b", "<&>'\"x").list("set", &[1, 2], |x, n| {
                x.text("n", &n.to_string());
            });
        });
        x.strings("s", &["a".to_string()]);
        assert_eq!(
            x.finish(),
            "<a><b>&lt;&amp;&gt;&apos;&quot;x</b><set><item><n>1</n></item><item><n>2</n></item></set></a><s><member>a</member></s>"
        );
    }
}
