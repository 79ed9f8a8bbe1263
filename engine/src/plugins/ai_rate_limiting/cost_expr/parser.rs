//! The `cost_expr` parser: precedence climbing over Lua's arithmetic,
//! counting its own recursion and the height of the tree it builds so
//! neither passes [`MAX_DEPTH`].

use super::{Func, Node, Op, MAX_DEPTH};

pub(super) struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// Calls of [`Parser::expr`] under way (each recursion passes there).
    depth: usize,
}

/// A parsed subtree and its height.
type Parsed = Result<(Node, usize), String>;

/// Binding powers (left, right) of the binary operators, Lua's order.
fn binding(op: Op) -> (u8, u8) {
    match op {
        Op::Add | Op::Sub => (1, 2),
        Op::Mul | Op::Div | Op::Mod => (3, 4),
        // Right-associative and above unary minus (5).
        Op::Pow => (8, 7),
    }
}

const UNARY: u8 = 5;

impl Parser<'_> {
    pub(super) fn new(s: &[u8]) -> Parser<'_> {
        Parser { s, i: 0, depth: 0 }
    }

    /// Whether all the input was read.
    pub(super) fn at_end(&self) -> bool {
        self.i == self.s.len()
    }
    pub(super) fn err(&self, what: &str) -> String {
        format!("{what} at character {}", self.i + 1)
    }

    pub(super) fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn too_deep(&self) -> String {
        self.err(&format!("nested more than {MAX_DEPTH} levels deep"))
    }

    /// A subtree one level above `height`, if that is not too deep.
    fn above(&self, height: usize) -> Result<usize, String> {
        match height + 1 {
            h if h > MAX_DEPTH => Err(self.too_deep()),
            h => Ok(h),
        }
    }

    pub(super) fn expr(&mut self, min: u8) -> Parsed {
        if self.depth >= MAX_DEPTH {
            return Err(self.too_deep());
        }
        self.depth += 1;
        let parsed = self.binary(min);
        self.depth -= 1;
        parsed
    }

    fn binary(&mut self, min: u8) -> Parsed {
        let (mut lhs, mut height) = self.operand()?;
        loop {
            self.ws();
            let op = match self.s.get(self.i) {
                Some(b'+') => Op::Add,
                Some(b'-') => Op::Sub,
                Some(b'*') => Op::Mul,
                Some(b'/') => Op::Div,
                Some(b'%') => Op::Mod,
                Some(b'^') => Op::Pow,
                _ => return Ok((lhs, height)),
            };
            let (l, r) = binding(op);
            if l < min {
                return Ok((lhs, height));
            }
            self.i += 1;
            if op == Op::Div && self.s.get(self.i) == Some(&b'/') {
                return Err(self.err("`//` is not Lua 5.1 (use floor(a / b))"));
            }
            let (rhs, rh) = self.expr(r)?;
            height = self.above(height.max(rh))?;
            lhs = Node::Bin(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn operand(&mut self) -> Parsed {
        self.ws();
        match self.s.get(self.i) {
            None => Err(self.err("expected a number, variable or `(`")),
            Some(b'-') => {
                self.i += 1;
                let (e, h) = self.expr(UNARY)?;
                Ok((Node::Neg(Box::new(e)), self.above(h)?))
            }
            Some(b'(') => {
                self.i += 1;
                let e = self.expr(0)?;
                self.ws();
                if self.s.get(self.i) != Some(&b')') {
                    return Err(self.err("expected `)`"));
                }
                self.i += 1;
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() || *c == b'.' => Ok((self.number()?, 1)),
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => self.name(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn number(&mut self) -> Result<Node, String> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_digit() || *c == b'.')
        {
            self.i += 1;
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .map(Node::Num)
            .ok_or_else(|| {
                self.i = start;
                self.err("invalid number")
            })
    }

    fn ident(&mut self) -> &str {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default()
    }

    fn name(&mut self) -> Parsed {
        let start = self.i;
        let mut name = self.ident().to_owned();
        if name == "math" && self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            name = self.ident().to_owned();
        }
        let keyword = matches!(
            name.as_str(),
            "and"
                | "or"
                | "not"
                | "nil"
                | "true"
                | "false"
                | "function"
                | "end"
                | "if"
                | "then"
                | "else"
                | "return"
                | "local"
        );
        if keyword {
            self.i = start;
            return Err(self.err(&format!("`{name}` is not arithmetic")));
        }
        self.ws();
        if self.s.get(self.i) != Some(&b'(') {
            return Ok((Node::Var(name), 1));
        }
        let func = match name.as_str() {
            "abs" => Func::Abs,
            "ceil" => Func::Ceil,
            "floor" => Func::Floor,
            "max" => Func::Max,
            "min" => Func::Min,
            _ => {
                self.i = start;
                return Err(self.err(&format!(
                    "unknown function `{name}` (abs, ceil, floor, max, min)"
                )));
            }
        };
        self.i += 1;
        let mut args = Vec::new();
        let mut height = 0;
        loop {
            let (arg, h) = self.expr(0)?;
            height = height.max(h);
            args.push(arg);
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b')') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(self.err("expected `,` or `)`")),
            }
        }
        let arity_ok = match func {
            Func::Abs | Func::Ceil | Func::Floor => args.len() == 1,
            Func::Max | Func::Min => !args.is_empty(),
        };
        if !arity_ok {
            self.i = start;
            return Err(self.err(&format!("wrong number of arguments to `{name}`")));
        }
        Ok((Node::Call(func, args), self.above(height)?))
    }
}
