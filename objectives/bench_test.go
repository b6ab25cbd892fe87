package objectives

import (
	"fmt"
	"testing"
)

// BenchmarkDPOEval is one DPO + NLL evaluation (value, metrics, gradients) on
// a warm evaluator, as the engine calls it once per step.
func BenchmarkDPOEval(b *testing.B) {
	for _, n := range []int{8, 64} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			d, err := NewDPO(DefaultDPOOptions())
			if err != nil {
				b.Fatal(err)
			}
			batch := sampleDPOBatch(1, n)
			if _, err := d.Eval(batch); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := d.Eval(batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBradleyTerryEval is one reward-model loss evaluation over n rows,
// a quarter of them ranked triples.
func BenchmarkBradleyTerryEval(b *testing.B) {
	for _, n := range []int{8, 64} {
		b.Run(fmt.Sprintf("rows=%d", n), func(b *testing.B) {
			bt, err := NewBradleyTerry(BTOptions{CenteringCoef: 0.01})
			if err != nil {
				b.Fatal(err)
			}
			var rewards []float64
			var pairs []Pair
			for row := range n {
				k := 2
				if row%4 == 0 {
					k = 3
				}
				idx := make([]int, k)
				for j := range idx {
					idx[j] = len(rewards)
					rewards = append(rewards, float64((row*7+j*3)%11)/5-1)
				}
				p, err := RankedPairs(row, 0, idx...)
				if err != nil {
					b.Fatal(err)
				}
				pairs = append(pairs, p...)
			}
			if _, err := bt.Eval(rewards, pairs); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := bt.Eval(rewards, pairs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
