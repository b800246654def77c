//! Lowers [`Rules`] to the matcher's program: every rule a list of alternatives, every
//! alternative a sequence of byte-set terminals and rule calls ending in `End`, laid out in one
//! flat array as llama.cpp does. Character classes become alternatives of UTF-8 byte
//! sequences (so tokens that split a character work), nested alternatives and repetitions
//! become generated rules (`x*` is `r ::= x r | ε`, `x{0,n}` a chain of optional rules), and
//! left recursion, which a top-down matcher cannot run, is refused.

use crate::FastMap as HashMap;
use regex_syntax::utf8::Utf8Sequences;

use crate::ast::{Expr, MAX_REPEAT, Rules};
use crate::error::{GrammarError, Result};

/// A set of bytes, one bit per byte value.
pub type ByteSet = [u64; 4];

/// Whether `b` is in `set`.
#[inline]
pub fn has(set: &ByteSet, b: u8) -> bool {
    set[(b >> 6) as usize] >> (b & 63) & 1 == 1
}

fn add_range(set: &mut ByteSet, lo: u8, hi: u8) {
    for b in lo..=hi {
        set[(b >> 6) as usize] |= 1 << (b & 63);
    }
}

/// One element of the flat program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    /// One byte of the set with this index.
    Term(u32),
    /// Match rule `r`, then continue after this element.
    Call(u32),
    /// The end of an alternative: return to the caller.
    End,
}

/// A compiled grammar: the flat program the matcher runs.
#[derive(Debug, Clone)]
pub struct Program {
    /// Elements of every alternative of every rule, each alternative ending with `End`.
    pub elems: Vec<Elem>,
    /// Start positions of each rule's alternatives.
    pub alts: Vec<Vec<u32>>,
    /// Byte sets the terminals use.
    pub sets: Vec<ByteSet>,
    /// The start rule.
    pub root: u32,
    /// Rule names (generated rules are named after the rule they come from).
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Item {
    Term(u32),
    Call(u32),
}

struct Lowerer<'a> {
    src: &'a Rules,
    rules: Vec<Vec<Vec<Item>>>,
    names: Vec<String>,
    sets: Vec<ByteSet>,
    set_index: HashMap<ByteSet, u32>,
    anon: HashMap<Expr, u32>,
    star: HashMap<Item, u32>,
    opt: HashMap<(Item, u32), u32>,
}

/// Lower `rules` with `root` as the start rule.
pub fn compile(rules: &Rules, root: usize) -> Result<Program> {
    rules.check()?;
    let n = rules.len();
    let mut l = Lowerer {
        src: rules,
        rules: vec![Vec::new(); n],
        names: rules.names().to_vec(),
        sets: Vec::new(),
        set_index: HashMap::default(),
        anon: HashMap::default(),
        star: HashMap::default(),
        opt: HashMap::default(),
    };
    for id in 0..n {
        let body = l.src.body(id).expect("checked").clone();
        let alts = l.lower_alts(&body, id)?;
        l.rules[id] = alts;
    }
    if l.rules.len() > 1_000_000 {
        return Err(GrammarError::TooLarge(format!(
            "{} rules after expansion",
            l.rules.len()
        )));
    }
    check_left_recursion(&l.rules, &l.names)?;
    let mut elems = Vec::new();
    let mut alts = Vec::with_capacity(l.rules.len());
    for rule in &l.rules {
        let mut starts = Vec::with_capacity(rule.len());
        for alt in rule {
            starts.push(elems.len() as u32);
            elems.extend(alt.iter().map(|it| match *it {
                Item::Term(s) => Elem::Term(s),
                Item::Call(r) => Elem::Call(r),
            }));
            elems.push(Elem::End);
        }
        alts.push(starts);
    }
    Ok(Program {
        elems,
        alts,
        sets: l.sets,
        root: root as u32,
        names: l.names,
    })
}

impl Lowerer<'_> {
    fn new_rule(&mut self, parent: usize) -> u32 {
        let id = self.rules.len();
        self.rules.push(Vec::new());
        let base = self.names[parent].clone();
        self.names.push(format!("{base}-{id}"));
        id as u32
    }

    fn set(&mut self, set: ByteSet) -> u32 {
        if let Some(&i) = self.set_index.get(&set) {
            return i;
        }
        let i = self.sets.len() as u32;
        self.sets.push(set);
        self.set_index.insert(set, i);
        i
    }

    fn lower_alts(&mut self, e: &Expr, parent: usize) -> Result<Vec<Vec<Item>>> {
        match e {
            Expr::Alt(branches) => {
                let mut out = Vec::with_capacity(branches.len());
                for b in branches {
                    let mut seq = Vec::new();
                    self.lower_seq(b, parent, &mut seq)?;
                    out.push(seq);
                }
                Ok(out)
            }
            other => {
                let mut seq = Vec::new();
                self.lower_seq(other, parent, &mut seq)?;
                Ok(vec![seq])
            }
        }
    }

    /// A rule for `e` (shared between identical expressions).
    fn anon_rule(&mut self, e: &Expr, parent: usize) -> Result<u32> {
        if let Some(&r) = self.anon.get(e) {
            return Ok(r);
        }
        let r = self.new_rule(parent);
        let alts = self.lower_alts(e, parent)?;
        self.rules[r as usize] = alts;
        self.anon.insert(e.clone(), r);
        Ok(r)
    }

    /// `e` as one item: a terminal or a call.
    fn unit(&mut self, e: &Expr, parent: usize) -> Result<Item> {
        let mut seq = Vec::new();
        if !matches!(e, Expr::Alt(_)) {
            self.lower_seq(e, parent, &mut seq)?;
            if seq.len() == 1 {
                return Ok(seq[0]);
            }
        }
        Ok(Item::Call(self.anon_rule(e, parent)?))
    }

    fn lower_seq(&mut self, e: &Expr, parent: usize, out: &mut Vec<Item>) -> Result<()> {
        match e {
            Expr::Seq(items) => {
                for it in items {
                    self.lower_seq(it, parent, out)?;
                }
            }
            Expr::Lit(bytes) => {
                for &b in bytes {
                    let mut s = [0; 4];
                    add_range(&mut s, b, b);
                    out.push(Item::Term(self.set(s)));
                }
            }
            Expr::Bytes(ranges) => {
                let mut s = [0; 4];
                for &(lo, hi) in ranges {
                    if lo <= hi {
                        add_range(&mut s, lo, hi);
                    }
                }
                out.push(Item::Term(self.set(s)));
            }
            Expr::Class { ranges, negated } => {
                let item = self.class(ranges, *negated, parent)?;
                out.push(item);
            }
            Expr::Rule(r) => out.push(Item::Call(*r as u32)),
            Expr::Alt(branches) if branches.len() == 1 => {
                self.lower_seq(&branches[0], parent, out)?;
            }
            Expr::Alt(_) => out.push(Item::Call(self.anon_rule(e, parent)?)),
            Expr::Repeat { expr, min, max } => {
                if *min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT) {
                    return Err(GrammarError::TooLarge(format!(
                        "a repetition count above {MAX_REPEAT}"
                    )));
                }
                if max.is_some_and(|m| m < *min) {
                    return Err(GrammarError::Empty(format!(
                        "a repetition {{{min},{}}} whose maximum is below its minimum",
                        max.unwrap_or(0)
                    )));
                }
                if max == &Some(0) {
                    return Ok(());
                }
                let unit = self.unit(expr, parent)?;
                for _ in 0..*min {
                    out.push(unit);
                }
                match max {
                    None => out.push(Item::Call(self.star(unit, parent))),
                    Some(m) if *m > *min => {
                        out.push(Item::Call(self.opt_chain(unit, m - min, parent)))
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    /// `r ::= unit r | ε`.
    fn star(&mut self, unit: Item, parent: usize) -> u32 {
        if let Some(&r) = self.star.get(&unit) {
            return r;
        }
        let r = self.new_rule(parent);
        self.rules[r as usize] = vec![vec![unit, Item::Call(r)], vec![]];
        self.star.insert(unit, r);
        r
    }

    /// Up to `k` more units: `o_k ::= unit o_{k-1} | ε`, `o_1 ::= unit | ε`.
    fn opt_chain(&mut self, unit: Item, k: u32, parent: usize) -> u32 {
        let mut prev: Option<u32> = None;
        for i in 1..=k {
            if let Some(&r) = self.opt.get(&(unit, i)) {
                prev = Some(r);
                continue;
            }
            let r = self.new_rule(parent);
            let mut first = vec![unit];
            if let Some(p) = prev {
                first.push(Item::Call(p));
            }
            self.rules[r as usize] = vec![first, vec![]];
            self.opt.insert((unit, i), r);
            prev = Some(r);
        }
        prev.expect("k >= 1")
    }

    /// A character class: one terminal when every character is ASCII, else a rule whose
    /// alternatives are the UTF-8 byte sequences of the code point ranges.
    fn class(&mut self, ranges: &[(u32, u32)], negated: bool, parent: usize) -> Result<Item> {
        let set = code_point_set(ranges, negated);
        if set.is_empty() {
            return Err(GrammarError::Empty(
                "a character class that matches no character".into(),
            ));
        }
        let key = Expr::Class {
            ranges: set.clone(),
            negated: false,
        };
        if let Some(&r) = self.anon.get(&key) {
            return Ok(Item::Call(r));
        }
        let mut ascii = [0u64; 4];
        let mut multi: Vec<Vec<Item>> = Vec::new();
        for &(lo, hi) in &set {
            let (Some(a), Some(b)) = (char::from_u32(lo), char::from_u32(hi)) else {
                continue;
            };
            for seq in Utf8Sequences::new(a, b) {
                let s = seq.as_slice();
                if s.len() == 1 {
                    add_range(&mut ascii, s[0].start, s[0].end);
                } else {
                    let mut alt = Vec::with_capacity(s.len());
                    for r in s {
                        let mut bs = [0; 4];
                        add_range(&mut bs, r.start, r.end);
                        alt.push(Item::Term(self.set(bs)));
                    }
                    multi.push(alt);
                }
            }
        }
        let has_ascii = ascii != [0; 4];
        if multi.is_empty() {
            return Ok(Item::Term(self.set(ascii)));
        }
        if has_ascii {
            let t = self.set(ascii);
            multi.insert(0, vec![Item::Term(t)]);
        }
        let r = self.new_rule(parent);
        self.rules[r as usize] = multi;
        self.anon.insert(key, r);
        Ok(Item::Call(r))
    }
}

/// The class's code points as sorted, merged, surrogate-free inclusive ranges.
pub fn code_point_set(ranges: &[(u32, u32)], negated: bool) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = ranges
        .iter()
        .filter(|(a, b)| a <= b)
        .map(|&(a, b)| (a, b.min(0x10FFFF)))
        .filter(|(a, _)| *a <= 0x10FFFF)
        .collect();
    v.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let set = if negated {
        let mut out = Vec::new();
        let mut next = 0u32;
        for (a, b) in merged {
            if a > next {
                out.push((next, a - 1));
            }
            next = b + 1;
        }
        if next <= 0x10FFFF {
            out.push((next, 0x10FFFF));
        }
        out
    } else {
        merged
    };
    // Cut out the surrogates, which are not characters.
    let mut out = Vec::with_capacity(set.len() + 1);
    for (a, b) in set {
        if b < 0xD800 || a > 0xDFFF {
            out.push((a, b));
        } else {
            if a < 0xD800 {
                out.push((a, 0xD7FF));
            }
            if b > 0xDFFF {
                out.push((0xE000, b));
            }
        }
    }
    out
}

fn check_left_recursion(rules: &[Vec<Vec<Item>>], names: &[String]) -> Result<()> {
    let n = rules.len();
    let mut nullable = vec![false; n];
    loop {
        let mut changed = false;
        for (r, alts) in rules.iter().enumerate() {
            if nullable[r] {
                continue;
            }
            let any = alts.iter().any(|alt| {
                alt.iter().all(|it| match it {
                    Item::Term(_) => false,
                    Item::Call(s) => nullable[*s as usize],
                })
            });
            if any {
                nullable[r] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // Edges r -> s where s can start r's match.
    let mut edges: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (r, alts) in rules.iter().enumerate() {
        for alt in alts {
            for it in alt {
                match it {
                    Item::Term(_) => break,
                    Item::Call(s) => {
                        edges[r].push(*s);
                        if !nullable[*s as usize] {
                            break;
                        }
                    }
                }
            }
        }
    }
    // Iterative DFS for a cycle.
    let mut color = vec![0u8; n];
    for start in 0..n {
        if color[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        color[start] = 1;
        while let Some(&mut (r, ref mut i)) = stack.last_mut() {
            if *i < edges[r].len() {
                let s = edges[r][*i] as usize;
                *i += 1;
                match color[s] {
                    0 => {
                        color[s] = 1;
                        stack.push((s, 0));
                    }
                    1 => return Err(GrammarError::LeftRecursion(base_name(&names[s]))),
                    _ => {}
                }
            } else {
                color[r] = 2;
                stack.pop();
            }
        }
    }
    Ok(())
}

/// The user-visible name of a rule (generated rules carry their parent's name and a number).
fn base_name(name: &str) -> String {
    match name.rsplit_once('-') {
        Some((base, num)) if num.chars().all(|c| c.is_ascii_digit()) && !base.is_empty() => {
            base.to_string()
        }
        _ => name.to_string(),
    }
}
