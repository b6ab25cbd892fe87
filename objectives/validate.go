package objectives

import (
	"fmt"
	"math"
)

// checkFinite names the field and row of the first NaN or infinite value.
func checkFinite(field string, vals []float64) error {
	for i, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s[%d] = %v: must be finite", field, i, v)
		}
	}
	return nil
}

// checkParam rejects a NaN/infinite option or one below its minimum.
func checkParam(name string, v, min float64, strict bool) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%s = %v: must be finite", name, v)
	}
	if strict && v <= min {
		return fmt.Errorf("%s = %v: must be > %v", name, v, min)
	}
	if !strict && v < min {
		return fmt.Errorf("%s = %v: must be >= %v", name, v, min)
	}
	return nil
}
