//! The small expression language of routing rules: a rule's condition over the lead
//! (`band == 'hot' and lead.country in ['ES', 'MX']`) and its skill expression over the agent
//! (`languages has lead.language and tier >= 2`).
//!
//! ```text
//! expr    := and ('or' and)*
//! and     := unary ('and' unary)*
//! unary   := 'not' unary | compare
//! compare := operand (('==' | '!=' | '<' | '<=' | '>' | '>=' | 'has' | 'in') operand)?
//! operand := 'text' | number | true | false | '[' literals ']' | name | '(' expr ')'
//! name    := band | score | account.score | lead.<attribute>
//!          | agent names (languages, regions, products, tier, id)
//! ```
//!
//! Expressions are checked when the configuration is loaded: every name and operator is known,
//! operand types fit, band names exist; an error gives its column. Text compares without regard
//! to case. A lead attribute that is missing (or of another type) makes its comparison false, as
//! does `account.score` for a lead that names no account.

use std::fmt;

use compact_str::CompactString;

use crate::scoring::pipeline::Band;
pub use leadscore_store::agents::Skills;
use leadscore_store::lead::Value;

/// What an expression may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A rule's condition: the lead only.
    Lead,
    /// A skill expression: the agent, and the lead it would take.
    Agent,
}

/// What an expression is evaluated against.
pub trait Env {
    fn band(&self) -> Band;
    fn score(&self) -> f64;
    /// The score of the lead's account in the campaign, if it names one.
    fn account_score(&self) -> Option<f64>;
    fn attribute(&self, name: &str) -> Option<Value>;
    /// The agent's id and skills; only skill expressions ask.
    fn agent(&self) -> (&str, &Skills);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.column, self.message)
    }
}

/// A checked expression, ready to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    node: Node,
    reads_lead: bool,
}

impl Expr {
    pub fn parse(text: &str, scope: Scope) -> Result<Self, ExprError> {
        let tokens = lex(text)?;
        let mut parser = Parser { tokens, at: 0, scope, end: text.chars().count() + 1 };
        let node = parser.or()?;
        if let Some(token) = parser.tokens.get(parser.at) {
            return Err(error(token.column, format!("expected `and`, `or` or the end, found {}", token.kind)));
        }
        let kind = node.kind();
        if !matches!(kind, Kind::Bool | Kind::Any) {
            return Err(error(1, format!("the expression must be true or false, not {}", kind.name())));
        }
        let reads_lead = node.reads_lead();
        Ok(Self { node, reads_lead })
    }

    pub fn always() -> Self {
        Self { node: Node::Lit(Lit::Bool(true)), reads_lead: false }
    }

    /// Whether the value depends on the lead (a skill expression that names `lead.…`, `band`
    /// or `score`), so that it cannot be settled once per agent.
    pub fn reads_lead(&self) -> bool {
        self.reads_lead
    }

    pub fn holds(&self, env: &dyn Env) -> bool {
        matches!(self.node.eval(env), Val::Bool(true))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Lit(Lit),
    Name(Name),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Compare(Op, Box<Node>, Box<Node>),
}

#[derive(Clone, Debug, PartialEq)]
enum Lit {
    Bool(bool),
    Number(f64),
    Text(CompactString),
    List(Vec<CompactString>),
}

#[derive(Clone, Debug, PartialEq)]
enum Name {
    Band,
    Score,
    AccountScore,
    Attribute(CompactString),
    Languages,
    Regions,
    Products,
    Tier,
    AgentId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Has,
    In,
}

/// The static type of an operand; a lead attribute's is only known at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Bool,
    Number,
    Text,
    List,
    Any,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Bool => "true or false",
            Kind::Number => "a number",
            Kind::Text => "text",
            Kind::List => "a list",
            Kind::Any => "a lead attribute",
        }
    }

    fn fits(self, other: Kind) -> bool {
        self == Kind::Any || other == Kind::Any || self == other
    }
}

impl Node {
    fn kind(&self) -> Kind {
        match self {
            Node::Lit(Lit::Bool(_)) | Node::Not(_) | Node::And(..) | Node::Or(..) | Node::Compare(..) => Kind::Bool,
            Node::Lit(Lit::Number(_)) | Node::Name(Name::Score | Name::AccountScore | Name::Tier) => Kind::Number,
            Node::Lit(Lit::Text(_)) | Node::Name(Name::Band | Name::AgentId) => Kind::Text,
            Node::Lit(Lit::List(_)) | Node::Name(Name::Languages | Name::Regions | Name::Products) => Kind::List,
            Node::Name(Name::Attribute(_)) => Kind::Any,
        }
    }

    fn reads_lead(&self) -> bool {
        match self {
            Node::Lit(_) => false,
            Node::Name(name) => matches!(name, Name::Band | Name::Score | Name::AccountScore | Name::Attribute(_)),
            Node::Not(inner) => inner.reads_lead(),
            Node::And(a, b) | Node::Or(a, b) | Node::Compare(_, a, b) => a.reads_lead() || b.reads_lead(),
        }
    }

    fn eval<'e>(&'e self, env: &'e dyn Env) -> Val<'e> {
        match self {
            Node::Lit(Lit::Bool(b)) => Val::Bool(*b),
            Node::Lit(Lit::Number(n)) => Val::Number(*n),
            Node::Lit(Lit::Text(t)) => Val::Text(t.clone()),
            Node::Lit(Lit::List(items)) => Val::List(items),
            Node::Name(name) => match name {
                Name::Band => Val::Text(env.band().name().into()),
                Name::Score => Val::Number(env.score()),
                Name::AccountScore => env.account_score().map_or(Val::Missing, Val::Number),
                Name::Attribute(attribute) => match env.attribute(attribute) {
                    Some(Value::Text(text)) => Val::Text(text),
                    Some(Value::Number(n)) => Val::Number(n),
                    Some(Value::Flag(b)) => Val::Bool(b),
                    None => Val::Missing,
                },
                Name::Languages => Val::List(&env.agent().1.languages),
                Name::Regions => Val::List(&env.agent().1.regions),
                Name::Products => Val::List(&env.agent().1.products),
                Name::Tier => Val::Number(f64::from(env.agent().1.tier)),
                Name::AgentId => Val::Text(env.agent().0.into()),
            },
            Node::Not(inner) => Val::Bool(!matches!(inner.eval(env), Val::Bool(true))),
            Node::And(a, b) => {
                Val::Bool(matches!(a.eval(env), Val::Bool(true)) && matches!(b.eval(env), Val::Bool(true)))
            }
            Node::Or(a, b) => {
                Val::Bool(matches!(a.eval(env), Val::Bool(true)) || matches!(b.eval(env), Val::Bool(true)))
            }
            Node::Compare(op, a, b) => Val::Bool(compare(*op, a.eval(env), b.eval(env))),
        }
    }
}

enum Val<'e> {
    Missing,
    Bool(bool),
    Number(f64),
    Text(CompactString),
    List(&'e [CompactString]),
}

fn compare(op: Op, a: Val, b: Val) -> bool {
    let same = |x: &str, y: &str| x.eq_ignore_ascii_case(y);
    match (op, a, b) {
        (Op::Has, Val::List(list), Val::Text(item)) | (Op::In, Val::Text(item), Val::List(list)) => {
            list.iter().any(|x| same(x, &item))
        }
        (Op::Eq, Val::Text(x), Val::Text(y)) => same(&x, &y),
        (Op::Ne, Val::Text(x), Val::Text(y)) => !same(&x, &y),
        (Op::Eq, Val::Bool(x), Val::Bool(y)) => x == y,
        (Op::Ne, Val::Bool(x), Val::Bool(y)) => x != y,
        (op, Val::Number(x), Val::Number(y)) => match op {
            Op::Eq => x == y,
            Op::Ne => x != y,
            Op::Lt => x < y,
            Op::Le => x <= y,
            Op::Gt => x > y,
            Op::Ge => x >= y,
            Op::Has | Op::In => false,
        },
        _ => false,
    }
}

fn error(column: usize, message: String) -> ExprError {
    ExprError { column, message }
}

#[derive(Clone, Debug, PartialEq)]
enum TokenKind {
    Word(String),
    Text(String),
    Number(f64),
    Symbol(&'static str),
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Word(word) => write!(f, "`{word}`"),
            TokenKind::Text(text) => write!(f, "'{text}'"),
            TokenKind::Number(n) => write!(f, "{n}"),
            TokenKind::Symbol(s) => write!(f, "`{s}`"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    column: usize,
}

const SYMBOLS: [&str; 11] = ["==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ","];

fn lex(text: &str) -> Result<Vec<Token>, ExprError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let close =
                chars[i + 1..].iter().position(|&d| d == c).ok_or_else(|| error(column, "unclosed text".into()))?;
            tokens.push(Token { kind: TokenKind::Text(chars[i + 1..i + 1 + close].iter().collect()), column });
            i += close + 2;
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let len = chars[i + 1..].iter().take_while(|d| d.is_ascii_digit() || **d == '.').count() + 1;
            let word: String = chars[i..i + len].iter().collect();
            let number = word.parse().map_err(|_| error(column, format!("not a number: {word}")))?;
            tokens.push(Token { kind: TokenKind::Number(number), column });
            i += len;
        } else if c.is_alphabetic() || c == '_' {
            let len = chars[i..].iter().take_while(|d| d.is_alphanumeric() || matches!(d, '_' | '.' | '-')).count();
            tokens.push(Token { kind: TokenKind::Word(chars[i..i + len].iter().collect()), column });
            i += len;
        } else {
            let rest: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let symbol = SYMBOLS
                .iter()
                .find(|s| rest.starts_with(**s))
                .ok_or_else(|| error(column, format!("unexpected `{c}`")))?;
            tokens.push(Token { kind: TokenKind::Symbol(symbol), column });
            i += symbol.len();
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    scope: Scope,
    /// The column just past the text, where "unexpected end" errors point.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&TokenKind> {
        self.tokens.get(self.at).map(|t| &t.kind)
    }

    fn column(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |t| t.column)
    }

    fn next(&mut self, wanted: &str) -> Result<Token, ExprError> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or_else(|| error(self.end, format!("expected {wanted}, found the end")))?;
        self.at += 1;
        Ok(token)
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = matches!(self.peek(), Some(TokenKind::Word(w)) if w == word);
        self.at += usize::from(found);
        found
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found = matches!(self.peek(), Some(TokenKind::Symbol(s)) if *s == symbol);
        self.at += usize::from(found);
        found
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut node = self.and()?;
        while self.eat_word("or") {
            let column = self.column();
            node = Node::Or(Box::new(node), Box::new(self.logical(column, Self::and)?));
        }
        Ok(node)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let mut node = self.unary()?;
        while self.eat_word("and") {
            let column = self.column();
            node = Node::And(Box::new(node), Box::new(self.logical(column, Self::unary)?));
        }
        Ok(node)
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        if self.eat_word("not") {
            let column = self.column();
            return Ok(Node::Not(Box::new(self.logical(column, Self::unary)?)));
        }
        self.compare()
    }

    /// An operand of `and`, `or` or `not`, which must be true or false.
    fn logical(&mut self, column: usize, parse: fn(&mut Self) -> Result<Node, ExprError>) -> Result<Node, ExprError> {
        let node = parse(self)?;
        match node.kind() {
            Kind::Bool | Kind::Any => Ok(node),
            kind => Err(error(column, format!("expected true or false, found {}", kind.name()))),
        }
    }

    fn compare(&mut self) -> Result<Node, ExprError> {
        let left_column = self.column();
        let left = self.operand()?;
        let column = self.column();
        let op = match self.peek() {
            Some(TokenKind::Symbol(s)) => match *s {
                "==" => Op::Eq,
                "!=" => Op::Ne,
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                _ => return Ok(left),
            },
            Some(TokenKind::Word(w)) if w == "has" => Op::Has,
            Some(TokenKind::Word(w)) if w == "in" => Op::In,
            _ => return Ok(left),
        };
        self.at += 1;
        let right_column = self.column();
        let right = self.operand()?;
        let (l, r) = (left.kind(), right.kind());
        let fits = match op {
            Op::Eq | Op::Ne => l != Kind::List && r != Kind::List && l.fits(r),
            Op::Lt | Op::Le | Op::Gt | Op::Ge => l.fits(Kind::Number) && r.fits(Kind::Number),
            Op::Has => l == Kind::List && r.fits(Kind::Text),
            Op::In => l.fits(Kind::Text) && l != Kind::List && r == Kind::List,
        };
        if !fits {
            return Err(error(column, format!("cannot compare {} with {} this way", l.name(), r.name())));
        }
        check_band(&left, &right, right_column)?;
        check_band(&right, &left, left_column)?;
        Ok(Node::Compare(op, Box::new(left), Box::new(right)))
    }

    fn operand(&mut self) -> Result<Node, ExprError> {
        let token = self.next("a value or a name")?;
        Ok(match token.kind {
            TokenKind::Text(text) => Node::Lit(Lit::Text(text.into())),
            TokenKind::Number(n) => Node::Lit(Lit::Number(n)),
            TokenKind::Symbol("(") => {
                let node = self.or()?;
                if !self.eat_symbol(")") {
                    return Err(error(self.column(), "expected `)`".into()));
                }
                node
            }
            TokenKind::Symbol("[") => {
                let mut items = Vec::new();
                while !self.eat_symbol("]") {
                    if !items.is_empty() && !self.eat_symbol(",") {
                        return Err(error(self.column(), "expected `,` or `]`".into()));
                    }
                    let item = self.next("text")?;
                    match item.kind {
                        TokenKind::Text(text) => items.push(text.into()),
                        other => return Err(error(item.column, format!("a list holds text, found {other}"))),
                    }
                }
                Node::Lit(Lit::List(items))
            }
            TokenKind::Word(word) if word == "true" || word == "false" => Node::Lit(Lit::Bool(word == "true")),
            TokenKind::Word(word) => Node::Name(self.name(&word, token.column)?),
            TokenKind::Symbol(s) => {
                return Err(error(token.column, format!("expected a value or a name, found `{s}`")));
            }
        })
    }

    fn name(&self, word: &str, column: usize) -> Result<Name, ExprError> {
        if let Some(attribute) = word.strip_prefix("lead.") {
            return match attribute {
                "" => Err(error(column, "`lead.` needs an attribute name".into())),
                "band" => Ok(Name::Band),
                "score" => Ok(Name::Score),
                _ => Ok(Name::Attribute(attribute.into())),
            };
        }
        let agent = match word {
            "band" => return Ok(Name::Band),
            "score" => return Ok(Name::Score),
            leadscore_config::ACCOUNT_SCORE => return Ok(Name::AccountScore),
            "languages" => Name::Languages,
            "regions" => Name::Regions,
            "products" => Name::Products,
            "tier" => Name::Tier,
            "id" => Name::AgentId,
            _ => {
                let known = match self.scope {
                    Scope::Lead => "band, score, account.score, lead.<attribute>",
                    Scope::Agent => {
                        "languages, regions, products, tier, id, band, score, account.score, lead.<attribute>"
                    }
                };
                return Err(error(column, format!("unknown name `{word}` (known: {known})")));
            }
        };
        match self.scope {
            Scope::Agent => Ok(agent),
            Scope::Lead => {
                Err(error(column, format!("`{word}` is an agent's skill; a rule's condition reads the lead only")))
            }
        }
    }
}

/// `band == 'hoot'` is a mistake worth catching when the configuration loads.
fn check_band(name: &Node, other: &Node, column: usize) -> Result<(), ExprError> {
    if *name != Node::Name(Name::Band) {
        return Ok(());
    }
    let texts: Vec<&str> = match other {
        Node::Lit(Lit::Text(text)) => vec![text],
        Node::Lit(Lit::List(items)) => items.iter().map(|s| s.as_str()).collect(),
        _ => return Ok(()),
    };
    match texts.into_iter().find(|t| Band::from_name(&t.to_ascii_lowercase()).is_none()) {
        Some(bad) => Err(error(column, format!("unknown band '{bad}' (bands: unqualified, warm, sales_ready, hot)"))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lead {
        band: Band,
        score: f64,
        account_score: Option<f64>,
        attributes: Vec<(&'static str, Value)>,
        agent: Skills,
    }

    impl Env for Lead {
        fn band(&self) -> Band {
            self.band
        }
        fn score(&self) -> f64 {
            self.score
        }
        fn account_score(&self) -> Option<f64> {
            self.account_score
        }
        fn attribute(&self, name: &str) -> Option<Value> {
            self.attributes.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
        }
        fn agent(&self) -> (&str, &Skills) {
            ("a-1", &self.agent)
        }
    }

    fn env() -> Lead {
        Lead {
            band: Band::Hot,
            score: 81.5,
            account_score: Some(120.0),
            attributes: vec![
                ("language", Value::Text("ES".into())),
                ("employees", Value::Number(640.0)),
                ("existing_customer", Value::Flag(true)),
            ],
            agent: Skills {
                languages: vec!["en".into(), "es".into()],
                regions: vec!["emea".into()],
                products: vec![],
                tier: 2,
            },
        }
    }

    fn holds(text: &str, scope: Scope) -> bool {
        Expr::parse(text, scope).unwrap_or_else(|e| panic!("{text}: {e}")).holds(&env())
    }

    #[test]
    fn conditions_read_the_lead() {
        assert!(holds("band == 'hot'", Scope::Lead));
        assert!(holds("band in ['hot', 'sales_ready'] and score >= 80", Scope::Lead));
        assert!(!holds("band == 'warm' or score < 50", Scope::Lead));
        assert!(holds("lead.language == 'es'", Scope::Lead), "text compares without case");
        assert!(holds("lead.employees > 500 and lead.existing_customer", Scope::Lead));
        assert!(holds("not (lead.employees > 1000)", Scope::Lead));
        assert!(holds("lead.language in ['es', 'pt']", Scope::Lead));
        assert!(holds("account.score >= 100 and score > 80", Scope::Lead));
    }

    #[test]
    fn a_lead_without_an_account_has_no_account_score() {
        let lead = Lead { account_score: None, ..env() };
        let expr = Expr::parse("account.score >= 0", Scope::Lead).unwrap();
        assert!(!expr.holds(&lead));
        assert!(Expr::parse("not account.score >= 0", Scope::Lead).unwrap().holds(&lead));
        let err = Expr::parse("account.score == 'big'", Scope::Lead).unwrap_err();
        assert!(err.message.contains("number"), "{err}");
    }

    #[test]
    fn a_missing_or_mistyped_attribute_is_false() {
        assert!(!holds("lead.country == 'ES'", Scope::Lead));
        assert!(!holds("lead.country != 'ES'", Scope::Lead), "missing is neither equal nor unequal");
        assert!(holds("not lead.country == 'ES'", Scope::Lead));
        assert!(!holds("lead.language > 3", Scope::Lead));
    }

    #[test]
    fn skill_expressions_read_agent_and_lead() {
        assert!(holds("languages has 'es' and tier >= 2", Scope::Agent));
        assert!(holds("languages has lead.language", Scope::Agent));
        assert!(!holds("regions has 'apac' or tier > 2", Scope::Agent));
        assert!(holds("id == 'A-1'", Scope::Agent));
        assert!(!Expr::parse("tier >= 2", Scope::Agent).unwrap().reads_lead());
        assert!(Expr::parse("languages has lead.language", Scope::Agent).unwrap().reads_lead());
    }

    #[test]
    fn errors_give_their_column() {
        let cases = [
            ("languages has 'es' and tiers >= 2", Scope::Agent, 24, "unknown name `tiers`"),
            ("tier >= 'two'", Scope::Agent, 6, "cannot compare a number with text"),
            ("band == 'hoot'", Scope::Lead, 9, "unknown band 'hoot'"),
            ("tier >= 2", Scope::Lead, 1, "`tier` is an agent's skill"),
            ("band == 'hot' and", Scope::Lead, 18, "found the end"),
            ("(band == 'hot'", Scope::Lead, 15, "expected `)`"),
            ("band = 'hot'", Scope::Lead, 6, "unexpected `=`"),
            ("lead.name == 'x", Scope::Lead, 14, "unclosed text"),
            ("score", Scope::Lead, 1, "must be true or false"),
            ("band == 'hot' score", Scope::Lead, 15, "expected `and`, `or` or the end"),
            ("languages == 'es'", Scope::Agent, 11, "cannot compare a list with text"),
            ("tier >= 2 and 3", Scope::Agent, 15, "expected true or false, found a number"),
        ];
        for (text, scope, column, message) in cases {
            let err = Expr::parse(text, scope).expect_err(text);
            assert_eq!(err.column, column, "{text}: {err}");
            assert!(err.message.contains(message), "{text}: {err}");
        }
    }
}
