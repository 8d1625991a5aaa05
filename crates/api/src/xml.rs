//! A minimal XML writer for EC2 responses (elements and escaped text only).

/// Builds an XML document as a string.
#[derive(Debug, Default)]
pub struct Xml {
    out: String,
}

/// Escapes text for element content.
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&apos;"),
            c => s.push(c),
        }
    }
    s
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
        self.out.push_str(&escape(text));
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

    /// A `tagSet` list.
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
            x.text("b", "<&>").list("set", &[1, 2], |x, n| {
                x.text("n", &n.to_string());
            });
        });
        assert_eq!(
            x.finish(),
            "<a><b>&lt;&amp;&gt;</b><set><item><n>1</n></item><item><n>2</n></item></set></a>"
        );
    }
}
