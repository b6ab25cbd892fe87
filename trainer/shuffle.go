package trainer

import (
	"fmt"
	"math/rand/v2"
)

// Shuffler deals row indices of a dataset of N rows in a fresh seeded permutation each
// epoch. Its exported fields are its whole state: the permutation of an epoch is a pure
// function of (Seed, Epoch), so saving Seed, Epoch and Pos and loading them back resumes
// the exact same order.
type Shuffler struct {
	N     int    `json:"n"`
	Seed  uint64 `json:"seed"`
	Epoch int    `json:"epoch"`
	Pos   int    `json:"pos"`

	perm      []int
	permEpoch int
}

// NewShuffler starts at epoch 0, position 0.
func NewShuffler(n int, seed uint64) *Shuffler {
	return &Shuffler{N: n, Seed: seed, permEpoch: -1}
}

// Next returns the next row index, moving to the next epoch's permutation after N rows.
func (s *Shuffler) Next() (int, error) {
	if s.N <= 0 {
		return 0, fmt.Errorf("shuffler: dataset has %d rows", s.N)
	}
	if s.Pos >= s.N {
		s.Epoch++
		s.Pos = 0
	}
	if s.perm == nil || len(s.perm) != s.N || s.permEpoch != s.Epoch {
		s.shuffle()
	}
	i := s.perm[s.Pos]
	s.Pos++
	return i, nil
}

// Fill sets every element of dst to the next row index.
func (s *Shuffler) Fill(dst []int) error {
	for j := range dst {
		i, err := s.Next()
		if err != nil {
			return err
		}
		dst[j] = i
	}
	return nil
}

// shuffle builds the permutation of the current epoch in place (no allocation once sized).
func (s *Shuffler) shuffle() {
	if cap(s.perm) < s.N {
		s.perm = make([]int, s.N)
	}
	s.perm = s.perm[:s.N]
	for i := range s.perm {
		s.perm[i] = i
	}
	// Mixing the epoch into the second PCG word keeps epochs independent streams.
	rng := rand.New(rand.NewPCG(s.Seed, uint64(s.Epoch)*0x9e3779b97f4a7c15+0x2545f4914f6cdd1d))
	rng.Shuffle(s.N, func(i, j int) { s.perm[i], s.perm[j] = s.perm[j], s.perm[i] })
	s.permEpoch = s.Epoch
}
