package nn

import (
	"fmt"
	"math"
)

// RoPE holds precomputed rotary-embedding tables in Hugging Face's rotate-half convention:
// element i of a head is paired with element i+HeadDim/2 and both are rotated by the angle
// pos * theta^(-2i/HeadDim).
type RoPE struct {
	HeadDim int
	MaxPos  int
	// Cos and Sin are [MaxPos, HeadDim/2].
	Cos, Sin []float32
}

// NewRoPE precomputes the tables for positions [0, maxPos). Angles are computed in float64
// so the tables are as exact as float32 allows.
func NewRoPE(headDim, maxPos int, theta float64) (*RoPE, error) {
	if headDim <= 0 || headDim%2 != 0 {
		return nil, fmt.Errorf("rope: head dimension %d must be positive and even", headDim)
	}
	if maxPos <= 0 {
		return nil, fmt.Errorf("rope: max positions %d must be positive", maxPos)
	}
	if !(theta > 0) {
		return nil, fmt.Errorf("rope: theta %g must be positive", theta)
	}
	half := headDim / 2
	r := &RoPE{HeadDim: headDim, MaxPos: maxPos, Cos: make([]float32, maxPos*half), Sin: make([]float32, maxPos*half)}
	for i := 0; i < half; i++ {
		inv := math.Pow(theta, -float64(2*i)/float64(headDim))
		for p := 0; p < maxPos; p++ {
			s, c := math.Sincos(float64(p) * inv)
			r.Cos[p*half+i] = float32(c)
			r.Sin[p*half+i] = float32(s)
		}
	}
	return r, nil
}

// Forward rotates x in place. x holds len(pos) rows of stride floats; each row holds heads
// consecutive heads of HeadDim starting at offset 0. pos gives each row's position, which
// must lie in [0, MaxPos).
func (r *RoPE) Forward(x []float32, stride, heads int, pos []int32) {
	r.rotate(x, stride, heads, pos, 1)
}

// Backward applies the inverse rotation in place, turning the gradient with respect to the
// rotated values into the gradient with respect to the unrotated ones.
func (r *RoPE) Backward(dx []float32, stride, heads int, pos []int32) {
	r.rotate(dx, stride, heads, pos, -1)
}

func (r *RoPE) rotate(x []float32, stride, heads int, pos []int32, sign float32) {
	hd := r.HeadDim
	half := hd / 2
	for t, p := range pos {
		cs := r.Cos[int(p)*half : int(p+1)*half]
		sn := r.Sin[int(p)*half : int(p+1)*half]
		row := x[t*stride : t*stride+heads*hd]
		for h := 0; h < heads; h++ {
			a := row[h*hd : h*hd+half]
			b := row[h*hd+half : (h+1)*hd]
			b, cs, sn := b[:len(a)], cs[:len(a)], sn[:len(a)] // one bounds check per head
			for i, x1 := range a {
				c, s := cs[i], sign*sn[i]
				x2 := b[i]
				a[i] = x1*c - x2*s
				b[i] = x2*c + x1*s
			}
		}
	}
}
