package objectives

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gorgonia.org/gorgonia"
)

// The builder's -log sigmoid, its value and its gorgonia gradient, across the
// range including both far tails and exactly 0.
func TestNegLogSigmoidGradient(t *testing.T) {
	xs := []float64{-1000, -100, -30, -17, -5, -0.5, 0, 0.5, 5, 17, 30, 100, 1000}
	b := newBuilder()
	x := b.vector("x", len(xs))
	cost := b.sum(b.negLogSigmoid(x))
	p, err := b.compile(cost, nil, []string{"x"})
	require.NoError(t, err)
	require.NoError(t, p.set("x", xs))
	require.NoError(t, p.run())
	v, err := p.value("cost")
	require.NoError(t, err)
	g, err := p.grad("x")
	require.NoError(t, err)
	want := 0.0
	for _, xi := range xs {
		want += refNegLogSigmoid(xi)
	}
	assert.InDelta(t, want, v, 1e-12+1e-8*want)
	for i, xi := range xs {
		assert.False(t, math.IsNaN(g[i]) || math.IsInf(g[i], 0), "x=%v", xi)
		// d/dx -log sigmoid(x) = -sigmoid(-x)
		assert.InDelta(t, -refSigmoid(-xi), g[i], 1e-8, "x=%v", xi)
	}
	assert.Equal(t, -0.5, g[6], "exact at 0")
	assert.Equal(t, -1.0, g[0], "saturated at -1000")
	assert.Equal(t, 0.0, g[len(g)-1], "saturated at 1000")
}

// A matrix input and matVec: cost = sum((M v)^2), dcost/dv = 2 M^T M v, and
// the same program re-run with new values.
func TestMatVecProgram(t *testing.T) {
	b := newBuilder()
	m := b.matrix("m", 2, 3)
	v := b.vector("v", 3)
	p, err := b.compile(b.sum(b.square(b.matVec(m, v))), nil, []string{"v"})
	require.NoError(t, err)
	for _, tc := range []struct {
		m, v []float64
	}{
		{[]float64{1, 2, 3, 4, 5, 6}, []float64{1, 0, -1}},
		{[]float64{0, 1, 0, 2, 0, 1}, []float64{0.5, 2, 3}},
	} {
		require.NoError(t, p.set("m", tc.m))
		require.NoError(t, p.set("v", tc.v))
		require.NoError(t, p.run())
		mv := []float64{0, 0}
		for i := range 2 {
			for j := range 3 {
				mv[i] += tc.m[i*3+j] * tc.v[j]
			}
		}
		cost, err := p.value("cost")
		require.NoError(t, err)
		assert.InDelta(t, mv[0]*mv[0]+mv[1]*mv[1], cost, 1e-12)
		g, err := p.grad("v")
		require.NoError(t, err)
		for j := range 3 {
			assert.InDelta(t, 2*(tc.m[j]*mv[0]+tc.m[3+j]*mv[1]), g[j], 1e-12, "grad v[%d]", j)
		}
	}
}

func TestProgramErrors(t *testing.T) {
	t.Run("duplicate input", func(t *testing.T) {
		b := newBuilder()
		b.vector("x", 2)
		x := b.vector("x", 2)
		assert.Nil(t, x)
		_, err := b.compile(nil, nil, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `input "x" declared twice`)
	})
	t.Run("sticky build error", func(t *testing.T) {
		b := newBuilder()
		x := b.vector("x", 2)
		y := b.vector("y", 3)
		s := b.add(x, y) // shape mismatch
		assert.Nil(t, s)
		assert.Nil(t, b.mean(s), "later helpers short-circuit")
		_, err := b.compile(s, nil, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "build add")
	})
	t.Run("nil cost", func(t *testing.T) {
		b := newBuilder()
		b.vector("x", 2)
		_, err := b.compile(nil, nil, nil)
		assert.ErrorContains(t, err, "cost is nil")
	})
	t.Run("cost independent of wrt", func(t *testing.T) {
		b := newBuilder()
		x := b.vector("x", 2)
		b.vector("y", 2)
		_, err := b.compile(b.sum(x), nil, []string{"y"})
		assert.ErrorContains(t, err, "differentiate cost")
	})
	t.Run("unknown wrt", func(t *testing.T) {
		b := newBuilder()
		x := b.vector("x", 2)
		_, err := b.compile(b.sum(x), nil, []string{"y"})
		require.Error(t, err)
		assert.Contains(t, err.Error(), `"y": no such input`)
	})
	t.Run("nil output", func(t *testing.T) {
		b := newBuilder()
		x := b.vector("x", 2)
		_, err := b.compile(b.sum(x), map[string]*gorgonia.Node{"o": nil}, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `output "o" is nil`)
	})
	t.Run("set, read and grad misuse", func(t *testing.T) {
		b := newBuilder()
		x := b.vector("x", 2)
		y := b.vector("y", 2)
		p, err := b.compile(b.dot(x, y), nil, []string{"x"})
		require.NoError(t, err)
		assert.ErrorContains(t, p.set("z", []float64{1, 2}), `set "z": no such input`)
		assert.ErrorContains(t, p.set("x", []float64{1}), "got 1 values, graph expects 2")
		require.NoError(t, p.set("x", []float64{1, 2}))
		require.NoError(t, p.set("y", []float64{3, 4}))
		require.NoError(t, p.run())
		v, err := p.value("cost")
		require.NoError(t, err)
		assert.Equal(t, 11.0, v)
		g, err := p.grad("x")
		require.NoError(t, err)
		assert.Equal(t, []float64{3, 4}, g, "d(x.y)/dx = y")
		_, err = p.grad("y")
		assert.ErrorContains(t, err, `gradient of "y": input was not differentiated`)
		_, err = p.value("nope")
		assert.ErrorContains(t, err, `output "nope": no such output`)
	})
	t.Run("non-finite output", func(t *testing.T) {
		b := newBuilder()
		x := b.vector("x", 1)
		p, err := b.compile(b.sum(b.scale(1e308, x)), nil, []string{"x"})
		require.NoError(t, err)
		require.NoError(t, p.set("x", []float64{1e10}))
		require.NoError(t, p.run())
		_, err = p.value("cost")
		assert.ErrorContains(t, err, `output "cost" is +Inf`)
	})
}
