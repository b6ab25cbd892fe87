package objectives

import (
	"errors"
	"fmt"
	"math"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// This file holds the small internal toolkit every objective is written with:
// a builder that declares named float64 inputs and composes gorgonia
// expressions with a sticky error (so a loss reads as a formula, not as error
// plumbing), and a compiled program that binds new values into the same graph
// on every call, runs it on a TapeMachine and reads values and gradients back.
//
// Adding an objective means: declare inputs with vector/matrix, write the
// expression with the helpers below, call compile with the cost, the named
// outputs to read and the inputs to differentiate, then set/run/value/grad.

// input is a graph input whose tensor is bound once; later calls copy new
// values into its backing slice, which the TapeMachine reads on every run.
type input struct {
	name string
	node *gorgonia.Node
	data []float64
}

// builder composes a float64 expression graph. The first error sticks: every
// later helper returns nil and compile reports it.
type builder struct {
	g      *gorgonia.ExprGraph
	inputs []*input
	err    error
}

func newBuilder() *builder {
	return &builder{g: gorgonia.NewGraph()}
}

// vector declares a named input vector of length n.
func (b *builder) vector(name string, n int) *gorgonia.Node {
	return b.declare(name, tensor.Shape{n})
}

// matrix declares a named input matrix of rows x cols.
func (b *builder) matrix(name string, rows, cols int) *gorgonia.Node {
	return b.declare(name, tensor.Shape{rows, cols})
}

func (b *builder) declare(name string, shape tensor.Shape) *gorgonia.Node {
	if b.err != nil {
		return nil
	}
	for _, in := range b.inputs {
		if in.name == name {
			b.err = fmt.Errorf("input %q declared twice", name)
			return nil
		}
	}
	data := make([]float64, shape.TotalSize())
	var n *gorgonia.Node
	if len(shape) == 1 {
		n = gorgonia.NewVector(b.g, tensor.Float64, gorgonia.WithShape(shape...), gorgonia.WithName(name))
	} else {
		n = gorgonia.NewMatrix(b.g, tensor.Float64, gorgonia.WithShape(shape...), gorgonia.WithName(name))
	}
	t := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
	if err := gorgonia.Let(n, t); err != nil {
		b.err = fmt.Errorf("bind input %q: %w", name, err)
		return nil
	}
	b.inputs = append(b.inputs, &input{name: name, node: n, data: data})
	return n
}

// apply runs one gorgonia constructor unless an earlier one failed.
func (b *builder) apply(what string, f func() (*gorgonia.Node, error)) *gorgonia.Node {
	if b.err != nil {
		return nil
	}
	n, err := f()
	if err != nil {
		b.err = fmt.Errorf("build %s: %w", what, err)
		return nil
	}
	return n
}

// constant is a float64 scalar constant.
func (b *builder) constant(v float64) *gorgonia.Node {
	if b.err != nil {
		return nil
	}
	return gorgonia.NewConstant(v)
}

func (b *builder) neg(x *gorgonia.Node) *gorgonia.Node {
	return b.apply("neg", func() (*gorgonia.Node, error) { return gorgonia.Neg(x) })
}

func (b *builder) add(x, y *gorgonia.Node) *gorgonia.Node {
	return b.apply("add", func() (*gorgonia.Node, error) { return gorgonia.Add(x, y) })
}

func (b *builder) sub(x, y *gorgonia.Node) *gorgonia.Node {
	return b.apply("sub", func() (*gorgonia.Node, error) { return gorgonia.Sub(x, y) })
}

// mul is the element-wise product (or scaling when one side is a scalar).
func (b *builder) mul(x, y *gorgonia.Node) *gorgonia.Node {
	return b.apply("mul", func() (*gorgonia.Node, error) { return gorgonia.HadamardProd(x, y) })
}

// div is the element-wise quotient (or division by a scalar).
func (b *builder) div(x, y *gorgonia.Node) *gorgonia.Node {
	return b.apply("div", func() (*gorgonia.Node, error) { return gorgonia.HadamardDiv(x, y) })
}

// scale multiplies x by the constant c.
func (b *builder) scale(c float64, x *gorgonia.Node) *gorgonia.Node {
	return b.mul(b.constant(c), x)
}

func (b *builder) square(x *gorgonia.Node) *gorgonia.Node {
	return b.apply("square", func() (*gorgonia.Node, error) { return gorgonia.Square(x) })
}

func (b *builder) softplus(x *gorgonia.Node) *gorgonia.Node {
	return b.apply("softplus", func() (*gorgonia.Node, error) { return gorgonia.Softplus(x) })
}

// negLogSigmoid is -log sigmoid(x) = softplus(-x): the Bradley-Terry/DPO
// per-pair loss. gorgonia's Softplus returns x beyond 16 and 0 below -708, and
// its gradient is Sigmoid, so value and gradient stay finite for any finite x.
func (b *builder) negLogSigmoid(x *gorgonia.Node) *gorgonia.Node {
	return b.softplus(b.neg(x))
}

func (b *builder) sum(x *gorgonia.Node) *gorgonia.Node {
	return b.apply("sum", func() (*gorgonia.Node, error) { return gorgonia.Sum(x) })
}

func (b *builder) mean(x *gorgonia.Node) *gorgonia.Node {
	return b.apply("mean", func() (*gorgonia.Node, error) { return gorgonia.Mean(x) })
}

// dot is the inner product of two vectors of equal length.
func (b *builder) dot(x, y *gorgonia.Node) *gorgonia.Node {
	return b.apply("dot", func() (*gorgonia.Node, error) { return gorgonia.Mul(x, y) })
}

// matVec is the matrix-vector product m·v.
func (b *builder) matVec(m, v *gorgonia.Node) *gorgonia.Node {
	return b.apply("matvec", func() (*gorgonia.Node, error) { return gorgonia.Mul(m, v) })
}

// program is a compiled objective: the graph, its inputs, the named scalar
// outputs, the gradient of the cost for each differentiated input, and the
// TapeMachine that runs them. It is re-run with new input values and never
// rebuilt. Not safe for concurrent use; the evaluators serialise calls.
type program struct {
	inputs  map[string]*input
	outputs map[string]*gorgonia.Node
	grads   map[string]*gorgonia.Node
	vm      gorgonia.VM
}

// compile differentiates cost with respect to the inputs named in wrt and
// compiles the graph. outputs names the scalar nodes callers read back; the
// cost itself is always readable as "cost".
func (b *builder) compile(cost *gorgonia.Node, outputs map[string]*gorgonia.Node, wrt []string) (*program, error) {
	if b.err != nil {
		return nil, b.err
	}
	if cost == nil {
		return nil, errors.New("compile: cost is nil")
	}
	p := &program{
		inputs:  make(map[string]*input, len(b.inputs)),
		outputs: map[string]*gorgonia.Node{"cost": cost},
		grads:   make(map[string]*gorgonia.Node, len(wrt)),
	}
	for _, in := range b.inputs {
		p.inputs[in.name] = in
	}
	for name, n := range outputs {
		if n == nil {
			return nil, fmt.Errorf("output %q is nil", name)
		}
		p.outputs[name] = n
	}
	wrtNodes := make(gorgonia.Nodes, len(wrt))
	for i, name := range wrt {
		in, ok := p.inputs[name]
		if !ok {
			return nil, fmt.Errorf("differentiate with respect to %q: no such input", name)
		}
		wrtNodes[i] = in.node
	}
	if len(wrtNodes) > 0 {
		gs, err := gorgonia.Grad(cost, wrtNodes...)
		if err != nil {
			return nil, fmt.Errorf("differentiate cost: %w", err)
		}
		for i, name := range wrt {
			p.grads[name] = gs[i]
		}
	}
	vm, err := newTapeMachine(b.g)
	if err != nil {
		return nil, err
	}
	p.vm = vm
	return p, nil
}

// newTapeMachine turns gorgonia's compile panic into an error.
func newTapeMachine(g *gorgonia.ExprGraph) (vm gorgonia.VM, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("compile graph: %v", r)
		}
	}()
	return gorgonia.NewTapeMachine(g), nil
}

// set copies vals into the named input.
func (p *program) set(name string, vals []float64) error {
	in, ok := p.inputs[name]
	if !ok {
		return fmt.Errorf("set %q: no such input", name)
	}
	if len(vals) != len(in.data) {
		return fmt.Errorf("set %q: got %d values, graph expects %d", name, len(vals), len(in.data))
	}
	copy(in.data, vals)
	return nil
}

// run evaluates the graph and its gradients with the values currently set.
func (p *program) run() error {
	p.vm.Reset()
	if err := p.vm.RunAll(); err != nil {
		return fmt.Errorf("run objective graph: %w", err)
	}
	return nil
}

// value reads a named scalar output after run and checks it is finite.
func (p *program) value(name string) (float64, error) {
	n, ok := p.outputs[name]
	if !ok {
		return 0, fmt.Errorf("output %q: no such output", name)
	}
	vals, err := floats(n.Value())
	if err != nil {
		return 0, fmt.Errorf("output %q: %w", name, err)
	}
	if len(vals) != 1 {
		return 0, fmt.Errorf("output %q: expected a scalar, got %d values", name, len(vals))
	}
	if math.IsNaN(vals[0]) || math.IsInf(vals[0], 0) {
		return 0, fmt.Errorf("output %q is %v", name, vals[0])
	}
	return vals[0], nil
}

// grad returns a fresh copy of d cost / d input for a differentiated input.
func (p *program) grad(name string) ([]float64, error) {
	n, ok := p.grads[name]
	if !ok {
		return nil, fmt.Errorf("gradient of %q: input was not differentiated", name)
	}
	vals, err := floats(n.Value())
	if err != nil {
		return nil, fmt.Errorf("gradient of %q: %w", name, err)
	}
	if want := len(p.inputs[name].data); len(vals) != want {
		return nil, fmt.Errorf("gradient of %q: got %d values, want %d", name, len(vals), want)
	}
	out := make([]float64, len(vals))
	for i, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("gradient of %q[%d] is %v", name, i, v)
		}
		out[i] = v
	}
	return out, nil
}

// floats views a float64 gorgonia value (scalar or tensor) as a slice.
func floats(v gorgonia.Value) ([]float64, error) {
	if v == nil {
		return nil, errors.New("no value (graph not run)")
	}
	switch d := v.Data().(type) {
	case float64:
		return []float64{d}, nil
	case []float64:
		return d, nil
	default:
		return nil, fmt.Errorf("unexpected value type %T", d)
	}
}
