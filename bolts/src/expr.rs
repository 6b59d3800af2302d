//! The small expression language of `filter` and `map`: field comparisons, arithmetic,
//! boolean logic and a few string functions.
//!
//! ```text
//! expr    := or
//! or      := and ("||" and)*
//! and     := not ("&&" not)*
//! not     := "!" not | cmp
//! cmp     := sum (("==" | "!=" | "<" | "<=" | ">" | ">=") sum)?
//! sum     := product (("+" | "-") product)*
//! product := unary (("*" | "/" | "%") unary)*
//! unary   := "-" unary | atom
//! atom    := INT | FLOAT | STRING | "true" | "false" | "null"
//!          | FIELD | FUNC "(" (expr ("," expr)*)? ")" | "(" expr ")"
//! ```
//!
//! Strings are quoted with `"` or `'` (backslash escapes the quote and itself). A bare
//! name is a field of the input tuple. `+` adds numbers or joins strings; `/` on two
//! integers truncates. `==` compares any values (an int equals the float of the same
//! value); `<` and friends compare two numbers or two strings. Functions: `upper`,
//! `lower`, `trim`, `len`, `contains`, `starts_with`, `ends_with`, `str`, `int`, `float`,
//! `abs`. A projection is an expression with an optional `as name`; a bare field keeps
//! its name.

use std::fmt;

use smol_str::SmolStr;
use topo_engine::Value;

/// A syntax error, with the 1-based column where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong.
    pub message: String,
    /// Column (in characters, from 1) in the source.
    pub column: usize,
    /// The source text.
    pub source: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at column {} of {:?}",
            self.message, self.column, self.source
        )
    }
}

impl std::error::Error for ParseError {}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `||`
    Or,
    /// `&&`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
}

/// The built-in functions, with their number of arguments.
const FUNCS: [(&str, usize); 11] = [
    ("upper", 1),
    ("lower", 1),
    ("trim", 1),
    ("len", 1),
    ("contains", 2),
    ("starts_with", 2),
    ("ends_with", 2),
    ("str", 1),
    ("int", 1),
    ("float", 1),
    ("abs", 1),
];

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A constant.
    Lit(Value),
    /// A field of the input tuple.
    Field(String),
    /// `!e`
    Not(Box<Expr>),
    /// `-e`
    Neg(Box<Expr>),
    /// `a op b`
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `f(args)`
    Call(&'static str, Vec<Expr>),
}

impl Expr {
    /// Parses `src`.
    pub fn parse(src: &str) -> Result<Expr, ParseError> {
        let mut p = Parser::new(src)?;
        let e = p.expr()?;
        p.expect_end()?;
        Ok(e)
    }

    /// Every field the expression reads.
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Lit(_) => {}
            Expr::Field(f) => {
                if !out.contains(&f.as_str()) {
                    out.push(f);
                }
            }
            Expr::Not(e) | Expr::Neg(e) => e.collect_fields(out),
            Expr::Binary(_, a, b) => {
                a.collect_fields(out);
                b.collect_fields(out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.collect_fields(out)),
        }
    }

    /// Evaluates the expression; `field` looks up a field of the input by name.
    pub fn eval<'v>(&self, field: &dyn Fn(&str) -> Option<&'v Value>) -> Result<Value, String> {
        match self {
            Expr::Lit(v) => Ok(v.clone()),
            Expr::Field(name) => field(name)
                .cloned()
                .ok_or_else(|| format!("the tuple has no field `{name}`")),
            Expr::Not(e) => match e.eval(field)? {
                Value::Bool(b) => Ok(Value::Bool(!b)),
                v => Err(format!("`!` needs a boolean, got {}", describe(&v))),
            },
            Expr::Neg(e) => match e.eval(field)? {
                Value::Int(i) => i
                    .checked_neg()
                    .map(Value::Int)
                    .ok_or_else(|| "integer overflow in `-`".to_string()),
                Value::Float(f) => Ok(Value::Float(-f)),
                v => Err(format!("`-` needs a number, got {}", describe(&v))),
            },
            Expr::Binary(op @ (BinOp::And | BinOp::Or), a, b) => {
                let left = truth(&a.eval(field)?, op.symbol())?;
                if (*op == BinOp::And && !left) || (*op == BinOp::Or && left) {
                    return Ok(Value::Bool(left));
                }
                Ok(Value::Bool(truth(&b.eval(field)?, op.symbol())?))
            }
            Expr::Binary(op, a, b) => binary(*op, a.eval(field)?, b.eval(field)?),
            Expr::Call(name, args) => {
                let vals = args
                    .iter()
                    .map(|a| a.eval(field))
                    .collect::<Result<Vec<_>, _>>()?;
                call(name, &vals)
            }
        }
    }
}

/// The value as `true`/`false`, or an error naming what needed it.
pub fn truth(v: &Value, what: &str) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("`{what}` needs a boolean, got {}", describe(v)))
}

fn describe(v: &Value) -> String {
    let kind = match v {
        Value::Null => return "null".into(),
        Value::Bool(_) => "boolean",
        Value::Int(_) => "integer",
        Value::Float(_) => "float",
        Value::Str(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::List(_) => "list",
        Value::Map(_) => "map",
    };
    let text = match v {
        Value::Str(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    format!("{kind} {text}")
}

fn binary(op: BinOp, a: Value, b: Value) -> Result<Value, String> {
    use Value::{Float, Int, Str};
    let mismatch = |a: &Value, b: &Value| {
        format!(
            "`{}` cannot combine {} and {}",
            op.symbol(),
            describe(a),
            describe(b)
        )
    };
    match op {
        BinOp::Eq => Ok(Value::Bool(equal(&a, &b))),
        BinOp::Ne => Ok(Value::Bool(!equal(&a, &b))),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let ord = match (&a, &b) {
                (Str(x), Str(y)) => x.cmp(y),
                (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
                (Int(x), Int(y)) => x.cmp(y),
                _ => match (a.as_float(), b.as_float()) {
                    (Some(x), Some(y)) => x
                        .partial_cmp(&y)
                        .ok_or_else(|| format!("`{}` cannot compare NaN", op.symbol()))?,
                    _ => return Err(mismatch(&a, &b)),
                },
            };
            Ok(Value::Bool(match op {
                BinOp::Lt => ord.is_lt(),
                BinOp::Le => ord.is_le(),
                BinOp::Gt => ord.is_gt(),
                _ => ord.is_ge(),
            }))
        }
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => match (&a, &b) {
            (Str(x), Str(y)) if op == BinOp::Add => {
                let mut s = String::with_capacity(x.len() + y.len());
                s.push_str(x);
                s.push_str(y);
                Ok(Str(SmolStr::from(s)))
            }
            (Int(x), Int(y)) => {
                let (x, y) = (*x, *y);
                if matches!(op, BinOp::Div | BinOp::Rem) && y == 0 {
                    return Err(format!("`{}` by zero", op.symbol()));
                }
                let r = match op {
                    BinOp::Add => x.checked_add(y),
                    BinOp::Sub => x.checked_sub(y),
                    BinOp::Mul => x.checked_mul(y),
                    BinOp::Div => x.checked_div(y),
                    _ => x.checked_rem(y),
                };
                r.map(Int)
                    .ok_or_else(|| format!("integer overflow in `{}`", op.symbol()))
            }
            _ => match (a.as_float(), b.as_float()) {
                (Some(x), Some(y)) => Ok(Float(match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div => x / y,
                    _ => x % y,
                })),
                _ => Err(mismatch(&a, &b)),
            },
        },
        BinOp::And | BinOp::Or => unreachable!("handled with short-circuit in eval"),
    }
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(_), Value::Float(_)) | (Value::Float(_), Value::Int(_)) => {
            a.as_float() == b.as_float()
        }
        _ => a == b,
    }
}

fn call(name: &str, args: &[Value]) -> Result<Value, String> {
    let need_str = |i: usize| {
        args[i]
            .as_str()
            .ok_or_else(|| format!("`{name}` needs a string, got {}", describe(&args[i])))
    };
    Ok(match name {
        "upper" => Value::Str(need_str(0)?.to_uppercase().into()),
        "lower" => Value::Str(need_str(0)?.to_lowercase().into()),
        "trim" => Value::Str(need_str(0)?.trim().into()),
        "len" => match &args[0] {
            Value::Str(s) => Value::Int(s.chars().count() as i64),
            Value::List(l) => Value::Int(l.len() as i64),
            Value::Bytes(b) => Value::Int(b.len() as i64),
            Value::Map(m) => Value::Int(m.len() as i64),
            v => return Err(format!("`len` needs a string or list, got {}", describe(v))),
        },
        "contains" => Value::Bool(need_str(0)?.contains(need_str(1)?)),
        "starts_with" => Value::Bool(need_str(0)?.starts_with(need_str(1)?)),
        "ends_with" => Value::Bool(need_str(0)?.ends_with(need_str(1)?)),
        "str" => match &args[0] {
            Value::Str(s) => Value::Str(s.clone()),
            v => Value::Str(v.to_string().into()),
        },
        "int" => match &args[0] {
            Value::Int(i) => Value::Int(*i),
            Value::Float(f) if f.is_finite() => Value::Int(f.trunc() as i64),
            Value::Bool(b) => Value::Int(i64::from(*b)),
            Value::Str(s) => Value::Int(
                s.trim()
                    .parse()
                    .map_err(|_| format!("`int` cannot parse {s:?}"))?,
            ),
            v => return Err(format!("`int` cannot convert {}", describe(v))),
        },
        "float" => match &args[0] {
            Value::Str(s) => Value::Float(
                s.trim()
                    .parse()
                    .map_err(|_| format!("`float` cannot parse {s:?}"))?,
            ),
            v => Value::Float(
                v.as_float()
                    .ok_or_else(|| format!("`float` cannot convert {}", describe(v)))?,
            ),
        },
        "abs" => match &args[0] {
            Value::Int(i) => Value::Int(
                i.checked_abs()
                    .ok_or_else(|| "integer overflow in `abs`".to_string())?,
            ),
            Value::Float(f) => Value::Float(f.abs()),
            v => return Err(format!("`abs` needs a number, got {}", describe(v))),
        },
        other => return Err(format!("unknown function `{other}`")),
    })
}

/// One output field of a projection: a name and the expression computing it.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// The output field's name.
    pub name: String,
    /// Its value.
    pub expr: Expr,
}

impl Projection {
    /// Parses `expr` or `expr as name`; a bare field keeps its own name.
    pub fn parse(src: &str) -> Result<Projection, ParseError> {
        let mut p = Parser::new(src)?;
        let expr = p.expr()?;
        let name = match p.peek() {
            Some(Tok::Ident(kw)) if kw == "as" => {
                p.bump();
                match p.bump() {
                    Some((Tok::Ident(name), _)) if !is_keyword(&name) => name,
                    _ => return Err(p.error_here("expected a field name after `as`")),
                }
            }
            _ => match &expr {
                Expr::Field(f) => f.clone(),
                _ => {
                    return Err(ParseError {
                        message: format!(
                            "a computed value needs a name: write `{} as NAME`",
                            src.trim()
                        ),
                        column: 1,
                        source: src.to_string(),
                    })
                }
            },
        };
        p.expect_end()?;
        Ok(Projection { name, expr })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    Op(&'static str),
}

fn is_keyword(s: &str) -> bool {
    matches!(s, "true" | "false" | "null" | "as")
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

const OPS: [&str; 18] = [
    "&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")", ",", "=",
];

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Result<Self, ParseError> {
        let mut toks = Vec::new();
        let chars: Vec<(usize, char)> = src.char_indices().collect();
        let err = |message: String, i: usize| ParseError {
            message,
            column: i + 1,
            source: src.to_string(),
        };
        let mut i = 0;
        while i < chars.len() {
            let (at, c) = chars[i];
            let col = i;
            if c.is_whitespace() {
                i += 1;
            } else if c.is_ascii_digit() {
                let start = at;
                while i < chars.len() && (chars[i].1.is_ascii_alphanumeric() || chars[i].1 == '.') {
                    i += 1;
                }
                let end = chars.get(i).map_or(src.len(), |(b, _)| *b);
                let text = &src[start..end];
                let tok = if text.contains('.') || text.contains(['e', 'E']) {
                    text.parse().ok().map(Tok::Float)
                } else {
                    text.parse().ok().map(Tok::Int)
                };
                toks.push((
                    tok.ok_or_else(|| err(format!("`{text}` is not a number"), col))?,
                    col,
                ));
            } else if c.is_alphabetic() || c == '_' {
                let start = at;
                while i < chars.len() && (chars[i].1.is_alphanumeric() || chars[i].1 == '_') {
                    i += 1;
                }
                let end = chars.get(i).map_or(src.len(), |(b, _)| *b);
                toks.push((Tok::Ident(src[start..end].to_string()), col));
            } else if c == '"' || c == '\'' {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err("unterminated string".into(), col)),
                        Some((_, '\\')) => {
                            match chars.get(i + 1) {
                                Some((_, e)) if *e == c || *e == '\\' => s.push(*e),
                                Some((_, 'n')) => s.push('\n'),
                                Some((_, 't')) => s.push('\t'),
                                _ => return Err(err("unknown escape in string".into(), i)),
                            }
                            i += 2;
                        }
                        Some((_, q)) if *q == c => {
                            i += 1;
                            break;
                        }
                        Some((_, ch)) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                toks.push((Tok::Str(s), col));
            } else {
                let rest = &src[at..];
                let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
                    return Err(err(format!("unexpected character `{c}`"), col));
                };
                if *op == "=" {
                    return Err(err(
                        "`=` is not an operator; to compare, write `==`".into(),
                        col,
                    ));
                }
                toks.push((Tok::Op(op), col));
                i += op.chars().count();
            }
        }
        Ok(Parser { src, toks, pos: 0 })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn bump(&mut self) -> Option<(Tok, usize)> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn column(&self) -> usize {
        self.toks
            .get(self.pos)
            .map_or(self.src.chars().count(), |(_, c)| *c)
            + 1
    }

    fn error_here(&self, what: &str) -> ParseError {
        let found = match self.toks.get(self.pos) {
            None => "the end".to_string(),
            Some((t, _)) => format!("`{}`", show(t)),
        };
        ParseError {
            message: format!("{what}, found {found}"),
            column: self.column(),
            source: self.src.to_string(),
        }
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if self.peek() == Some(&Tok::Op(leak_op(op))) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_end(&self) -> Result<(), ParseError> {
        if self.pos < self.toks.len() {
            return Err(self.error_here("expected an operator or the end"));
        }
        Ok(())
    }

    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.and()?;
        while self.eat_op("||") {
            e = Expr::Binary(BinOp::Or, Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.not()?;
        while self.eat_op("&&") {
            e = Expr::Binary(BinOp::And, Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.eat_op("!") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, ParseError> {
        let a = self.sum()?;
        let ops = [
            ("==", BinOp::Eq),
            ("!=", BinOp::Ne),
            ("<=", BinOp::Le),
            (">=", BinOp::Ge),
            ("<", BinOp::Lt),
            (">", BinOp::Gt),
        ];
        for (sym, op) in ops {
            if self.eat_op(sym) {
                let b = self.sum()?;
                return Ok(Expr::Binary(op, Box::new(a), Box::new(b)));
            }
        }
        Ok(a)
    }

    fn sum(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.product()?;
        loop {
            let op = if self.eat_op("+") {
                BinOp::Add
            } else if self.eat_op("-") {
                BinOp::Sub
            } else {
                return Ok(e);
            };
            e = Expr::Binary(op, Box::new(e), Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<Expr, ParseError> {
        let mut e = self.unary()?;
        loop {
            let op = if self.eat_op("*") {
                BinOp::Mul
            } else if self.eat_op("/") {
                BinOp::Div
            } else if self.eat_op("%") {
                BinOp::Rem
            } else {
                return Ok(e);
            };
            e = Expr::Binary(op, Box::new(e), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat_op("-") {
            return Ok(match self.unary()? {
                Expr::Lit(Value::Int(i)) => Expr::Lit(Value::Int(-i)),
                Expr::Lit(Value::Float(f)) => Expr::Lit(Value::Float(-f)),
                e => Expr::Neg(Box::new(e)),
            });
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, ParseError> {
        let start = self.pos;
        match self.bump() {
            Some((Tok::Int(i), _)) => Ok(Expr::Lit(Value::Int(i))),
            Some((Tok::Float(f), _)) => Ok(Expr::Lit(Value::Float(f))),
            Some((Tok::Str(s), _)) => Ok(Expr::Lit(Value::Str(s.into()))),
            Some((Tok::Ident(name), col)) => match name.as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "null" => Ok(Expr::Lit(Value::Null)),
                "as" => {
                    self.pos = start;
                    Err(self.error_here("expected a value"))
                }
                _ if self.eat_op("(") => self.call(name, col),
                _ => Ok(Expr::Field(name)),
            },
            Some((Tok::Op("("), _)) => {
                let e = self.expr()?;
                if !self.eat_op(")") {
                    return Err(self.error_here("expected `)`"));
                }
                Ok(e)
            }
            _ => {
                self.pos = start;
                Err(self.error_here("expected a value"))
            }
        }
    }

    fn call(&mut self, name: String, col: usize) -> Result<Expr, ParseError> {
        let Some(&(fname, arity)) = FUNCS.iter().find(|(f, _)| *f == name) else {
            let best = FUNCS
                .iter()
                .map(|(f, _)| (edit_distance(f, &name), *f))
                .min()
                .filter(|(d, _)| *d <= 2);
            let hint = match best {
                Some((_, f)) => format!("did you mean `{f}`?"),
                None => format!(
                    "known: {}",
                    FUNCS.iter().map(|(f, _)| *f).collect::<Vec<_>>().join(", ")
                ),
            };
            return Err(ParseError {
                message: format!("unknown function `{name}` ({hint})"),
                column: col + 1,
                source: self.src.to_string(),
            });
        };
        let mut args = Vec::new();
        if !self.eat_op(")") {
            loop {
                args.push(self.expr()?);
                if self.eat_op(")") {
                    break;
                }
                if !self.eat_op(",") {
                    return Err(self.error_here("expected `,` or `)`"));
                }
            }
        }
        if args.len() != arity {
            return Err(ParseError {
                message: format!(
                    "`{fname}` takes {arity} argument{}, got {}",
                    if arity == 1 { "" } else { "s" },
                    args.len()
                ),
                column: col + 1,
                source: self.src.to_string(),
            });
        }
        Ok(Expr::Call(fname, args))
    }
}

fn leak_op(op: &str) -> &'static str {
    OPS.iter().find(|o| **o == op).copied().unwrap_or("")
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Int(i) => i.to_string(),
        Tok::Float(f) => f.to_string(),
        Tok::Str(s) => format!("{s:?}"),
        Tok::Ident(s) => s.clone(),
        Tok::Op(o) => (*o).to_string(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn eval(src: &str, fields: &[(&str, Value)]) -> Result<Value, String> {
        let map: HashMap<&str, Value> = fields.iter().cloned().collect();
        let e = Expr::parse(src).map_err(|e| e.to_string())?;
        e.eval(&|name| map.get(name))
    }

    #[test]
    fn comparisons_and_logic_follow_precedence() {
        let f = [("count", Value::Int(3)), ("word", Value::from("pemi"))];
        assert_eq!(
            eval("count >= 3 && word != \"ka\"", &f),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            eval("count > 3 || word == 'pemi' && !false", &f),
            Ok(Value::Bool(true))
        );
        assert_eq!(eval("1 + 2 * count - -1", &f), Ok(Value::Int(8)));
        assert_eq!(eval("count / 2 + 0.5 == 1.5", &f), Ok(Value::Bool(true)));
        assert_eq!(eval("(1 + 2) * 2 % 4", &f), Ok(Value::Int(2)));
    }

    #[test]
    fn functions_work_on_fields() {
        let f = [("word", Value::from("Pemi "))];
        assert_eq!(eval("upper(trim(word))", &f), Ok(Value::from("PEMI")));
        assert_eq!(eval("len(word) + int('4')", &f), Ok(Value::Int(9)));
        assert_eq!(
            eval("starts_with(lower(word), 'pe') && contains(word, 'm')", &f),
            Ok(Value::Bool(true))
        );
        assert_eq!(eval("word + '!'", &f), Ok(Value::from("Pemi !")));
        assert_eq!(eval("str(1.5) + str(2)", &f), Ok(Value::from("1.52")));
    }

    #[test]
    fn runtime_errors_say_what_went_wrong() {
        let f = [("word", Value::from("ka"))];
        assert_eq!(
            eval("word > 3", &f),
            Err("`>` cannot combine string \"ka\" and integer 3".into())
        );
        assert_eq!(
            eval("count > 3", &f),
            Err("the tuple has no field `count`".into())
        );
        assert_eq!(eval("1 / 0", &f), Err("`/` by zero".into()));
        assert_eq!(
            eval("word && true", &f),
            Err("`&&` needs a boolean, got string \"ka\"".into())
        );
    }

    #[test]
    fn syntax_errors_point_at_the_column() {
        let err = |s: &str| Expr::parse(s).expect_err(s).to_string();
        assert_eq!(
            err("count >= "),
            "expected a value, found the end at column 10 of \"count >= \""
        );
        assert_eq!(
            err("count = 3"),
            "`=` is not an operator; to compare, write `==` at column 7 of \"count = 3\""
        );
        assert_eq!(
            err("uper(word)"),
            "unknown function `uper` (did you mean `upper`?) at column 1 of \"uper(word)\""
        );
        assert_eq!(
            err("upper(word, 1)"),
            "`upper` takes 1 argument, got 2 at column 1 of \"upper(word, 1)\""
        );
        assert_eq!(
            err("word 'x'"),
            "expected an operator or the end, found `\"x\"` at column 6 of \"word 'x'\""
        );
        assert_eq!(err("'abc"), "unterminated string at column 1 of \"'abc\"");
        assert_eq!(
            err("(1 + 2"),
            "expected `)`, found the end at column 7 of \"(1 + 2\""
        );
    }

    #[test]
    fn projections_name_their_fields() {
        let p = Projection::parse("word").expect("bare field");
        assert_eq!(p.name, "word");
        let p = Projection::parse("upper(word) as shout").expect("named");
        assert_eq!((p.name.as_str(), p.expr.fields()), ("shout", vec!["word"]));
        assert_eq!(
            Projection::parse("count * 2")
                .expect_err("unnamed")
                .to_string(),
            "a computed value needs a name: write `count * 2 as NAME` at column 1 of \"count * 2\""
        );
        assert_eq!(
            Projection::parse("word as")
                .expect_err("no name")
                .to_string(),
            "expected a field name after `as`, found the end at column 8 of \"word as\""
        );
    }
}
