package trainer

import (
	"fmt"

	"github.com/posttrain/posttrain/transformer"
)

// ParamSegments lists a model's tensors as segments of its flat buffer, with weight decay
// on every tensor of two or more dimensions and none on the RMSNorm gains. It checks that
// each named view really sits at its offset, since the optimizer writes through them.
func ParamSegments(p *transformer.Params) ([]Segment, error) {
	names := make([]string, len(p.Tensors))
	shapes := make([][]int, len(p.Tensors))
	for i, t := range p.Tensors {
		names[i], shapes[i] = t.Name, t.Shape
	}
	segs, n, err := LayoutSegments(names, shapes)
	if err != nil {
		return nil, err
	}
	if n != len(p.Data) {
		return nil, fmt.Errorf("parameter tensors cover %d of %d values", n, len(p.Data))
	}
	for i, s := range segs {
		t := p.Tensors[i]
		if len(t.Data) != s.Size || (s.Size > 0 && &p.Data[s.Offset] != &t.Data[0]) {
			return nil, fmt.Errorf("tensor %s is not the view at offset %d of the flat parameter buffer", t.Name, s.Offset)
		}
	}
	return segs, nil
}
