package sweep

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
)

// Expr is a tied parameter's arithmetic over other parameters: numbers, dotted config
// keys, + - * / (× also reads as *), unary minus and parentheses. "2 * lora.r" ties
// alpha to twice the rank.
type Expr struct {
	src  string
	root node
}

type node interface {
	eval(vars map[string]any) (num, error)
}

// num is a value during evaluation; whole stays true while every operand was an
// integer and no division left a fraction, so "2 * lora.r" stays an int.
type num struct {
	v     float64
	whole bool
}

type lit struct{ n num }
type ref struct{ key string }
type neg struct{ x node }
type binop struct {
	op   byte
	l, r node
}

func (l lit) eval(map[string]any) (num, error) { return l.n, nil }

func (r ref) eval(vars map[string]any) (num, error) {
	switch v := vars[r.key].(type) {
	case int:
		return num{float64(v), true}, nil
	case float64:
		return num{v, false}, nil
	case nil:
		return num{}, fmt.Errorf("%s has no value", r.key)
	default:
		return num{}, fmt.Errorf("%s is %v, not a number", r.key, v)
	}
}

func (n neg) eval(vars map[string]any) (num, error) {
	x, err := n.x.eval(vars)
	return num{-x.v, x.whole}, err
}

func (b binop) eval(vars map[string]any) (num, error) {
	l, err := b.l.eval(vars)
	if err != nil {
		return num{}, err
	}
	r, err := b.r.eval(vars)
	if err != nil {
		return num{}, err
	}
	whole := l.whole && r.whole
	switch b.op {
	case '+':
		return num{l.v + r.v, whole}, nil
	case '-':
		return num{l.v - r.v, whole}, nil
	case '*':
		return num{l.v * r.v, whole}, nil
	}
	if r.v == 0 {
		return num{}, fmt.Errorf("division by zero")
	}
	q := l.v / r.v
	return num{q, whole && q == math.Trunc(q)}, nil
}

// ParseExpr parses a tied parameter's expression.
func ParseExpr(s string) (*Expr, error) {
	p := &exprParser{src: strings.ReplaceAll(s, "×", "*")}
	root, err := p.expr()
	if err == nil && p.peek() != 0 {
		err = fmt.Errorf("unexpected %q", p.src[p.i:])
	}
	if err != nil {
		return nil, fmt.Errorf("tied expression %q: %w", s, err)
	}
	return &Expr{src: s, root: root}, nil
}

// Eval computes the expression from the point's other values: an int when every
// operand is an int and the result is whole, else a float.
func (e *Expr) Eval(vars map[string]any) (any, error) {
	n, err := e.root.eval(vars)
	if err != nil {
		return nil, fmt.Errorf("tied expression %q: %w", e.src, err)
	}
	if n.whole && math.Abs(n.v) < 1<<53 {
		return int(n.v), nil
	}
	return n.v, nil
}

// Keys lists the config keys the expression reads.
func (e *Expr) Keys() []string {
	var out []string
	var walk func(n node)
	walk = func(n node) {
		switch n := n.(type) {
		case ref:
			out = append(out, n.key)
		case neg:
			walk(n.x)
		case binop:
			walk(n.l)
			walk(n.r)
		}
	}
	walk(e.root)
	return out
}

func (e *Expr) String() string { return e.src }

type exprParser struct {
	src string
	i   int
}

// peek skips spaces and returns the next byte, 0 at the end.
func (p *exprParser) peek() byte {
	for p.i < len(p.src) && p.src[p.i] == ' ' {
		p.i++
	}
	if p.i >= len(p.src) {
		return 0
	}
	return p.src[p.i]
}

func (p *exprParser) expr() (node, error) {
	l, err := p.term()
	for err == nil {
		c := p.peek()
		if c != '+' && c != '-' {
			return l, nil
		}
		p.i++
		var r node
		if r, err = p.term(); err == nil {
			l = binop{c, l, r}
		}
	}
	return nil, err
}

func (p *exprParser) term() (node, error) {
	l, err := p.factor()
	for err == nil {
		c := p.peek()
		if c != '*' && c != '/' {
			return l, nil
		}
		p.i++
		var r node
		if r, err = p.factor(); err == nil {
			l = binop{c, l, r}
		}
	}
	return nil, err
}

func (p *exprParser) factor() (node, error) {
	c := p.peek()
	switch {
	case c == 0:
		return nil, fmt.Errorf("unexpected end")
	case c == '-':
		p.i++
		x, err := p.factor()
		return neg{x}, err
	case c == '(':
		p.i++
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		if p.peek() != ')' {
			return nil, fmt.Errorf("missing )")
		}
		p.i++
		return x, nil
	case c >= '0' && c <= '9' || c == '.':
		start := p.i
		for p.i < len(p.src) && strings.IndexByte("0123456789.eE", p.src[p.i]) >= 0 ||
			p.i > start && p.i < len(p.src) && (p.src[p.i] == '-' || p.src[p.i] == '+') && (p.src[p.i-1] == 'e' || p.src[p.i-1] == 'E') {
			p.i++
		}
		text := p.src[start:p.i]
		if n, err := strconv.Atoi(text); err == nil {
			return lit{num{float64(n), true}}, nil
		}
		v, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, fmt.Errorf("bad number %q", text)
		}
		return lit{num{v, false}}, nil
	case c == '_' || unicode.IsLetter(rune(c)):
		start := p.i
		for p.i < len(p.src) && (p.src[p.i] == '_' || p.src[p.i] == '.' || unicode.IsLetter(rune(p.src[p.i])) || unicode.IsDigit(rune(p.src[p.i]))) {
			p.i++
		}
		return ref{p.src[start:p.i]}, nil
	}
	return nil, fmt.Errorf("unexpected %q", p.src[p.i:])
}
