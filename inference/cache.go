package inference

import (
	"errors"
	"fmt"
)

// Prefix is a prompt's key/value cache, computed once by Prefill and then only read: every
// Sequence started from it attends to these keys and values without copying them.
type Prefix struct {
	tokens []int32
	n      int
	// kv holds, per layer, the keys transposed per key/value head [kvHeads][headDim][n],
	// then the values [n, kvDim]; capacity is reused across prompts through the engine's
	// free list. Transposed keys make q·k a plain row-major matmul.
	kv     []float32
	logits []float32 // the logits after the last prompt token, vocab
	refs   int       // live sequences reading this prefix
	kvDim  int
}

// Len is the prompt length.
func (p *Prefix) Len() int { return p.n }

// Tokens are the prompt tokens.
func (p *Prefix) Tokens() []int32 { return p.tokens }

// Logits are the next-token logits after the prompt (read-only).
func (p *Prefix) Logits() []float32 { return p.logits }

// keysT is layer l's keys, [kvHeads][headDim][n].
func (p *Prefix) keysT(l int) []float32 {
	return p.kv[2*l*p.n*p.kvDim : (2*l+1)*p.n*p.kvDim]
}

func (p *Prefix) values(l int) []float32 {
	return p.kv[(2*l+1)*p.n*p.kvDim : (2*l+2)*p.n*p.kvDim]
}

// Sequence is one sample continuing a Prefix: it owns the keys and values of the tokens
// fed to it after the prompt, up to a fixed capacity.
type Sequence struct {
	prefix *Prefix
	n, cap int
	kv     []float32 // per layer: keys [kvHeads][headDim][cap] then values [cap, kvDim]
	kvDim  int
	step   uint64 // the engine's last Decode that fed this sequence
}

// Len is the number of tokens fed to the sequence after its prompt.
func (s *Sequence) Len() int { return s.n }

// Prefix is the shared prompt cache the sequence continues.
func (s *Sequence) Prefix() *Prefix { return s.prefix }

// Position is the position of the next token fed to the sequence.
func (s *Sequence) Position() int { return s.prefix.n + s.n }

// keysT is layer l's keys, [kvHeads][headDim][cap].
func (s *Sequence) keysT(l int) []float32 {
	return s.kv[2*l*s.cap*s.kvDim : (2*l+1)*s.cap*s.kvDim]
}

func (s *Sequence) values(l int) []float32 {
	return s.kv[(2*l+1)*s.cap*s.kvDim : (2*l+2)*s.cap*s.kvDim]
}

// NewSequence starts a sequence on prefix that can be fed up to capacity tokens. Its
// positions must stay below max_position_embeddings: prefix length + capacity <= limit.
func (e *Engine) NewSequence(p *Prefix, capacity int) (*Sequence, error) {
	if p == nil || p.kv == nil {
		return nil, errors.New("inference: sequence on a nil or released prefix")
	}
	if capacity < 0 {
		return nil, fmt.Errorf("inference: negative sequence capacity %d", capacity)
	}
	if p.n+capacity > e.d.maxPos {
		return nil, fmt.Errorf("inference: prompt of %d tokens + %d new tokens exceeds max_position_embeddings=%d", p.n, capacity, e.d.maxPos)
	}
	need := e.d.layers * 2 * capacity * e.d.kvDim
	s := &Sequence{prefix: p, cap: capacity, kvDim: e.d.kvDim, kv: e.takeSuffix(need)}
	p.refs++
	e.stats.Sequences++
	return s, nil
}

// ReleaseSequence returns the sequence's cache memory to the engine for reuse; the
// sequence must not be used afterwards. Releasing a prefix's last sequence does not
// release the prefix.
func (e *Engine) ReleaseSequence(s *Sequence) {
	if s == nil || s.kv == nil {
		return
	}
	e.freeSuffix = append(e.freeSuffix, s.kv[:0])
	s.kv = nil
	s.prefix.refs--
}

// ReleasePrefix returns the prefix's cache memory to the engine for reuse. It fails while
// sequences still read it.
func (e *Engine) ReleasePrefix(p *Prefix) error {
	if p == nil || p.kv == nil {
		return nil
	}
	if p.refs > 0 {
		return fmt.Errorf("inference: prefix still has %d live sequences", p.refs)
	}
	p.kv = p.kv[:0]
	e.freePrefix = append(e.freePrefix, p)
	return nil
}

// takeSuffix returns a zero-length-safe buffer of n floats from the free list or new.
func (e *Engine) takeSuffix(n int) []float32 {
	for i, b := range e.freeSuffix {
		if cap(b) >= n {
			last := len(e.freeSuffix) - 1
			e.freeSuffix[i] = e.freeSuffix[last]
			e.freeSuffix = e.freeSuffix[:last]
			return b[:n]
		}
	}
	return make([]float32, n)
}

// takePrefix returns a prefix with room for n tokens.
func (e *Engine) takePrefix(n int) *Prefix {
	need := e.d.layers * 2 * n * e.d.kvDim
	for i, p := range e.freePrefix {
		if cap(p.kv) >= need {
			last := len(e.freePrefix) - 1
			e.freePrefix[i] = e.freePrefix[last]
			e.freePrefix = e.freePrefix[:last]
			p.kv = p.kv[:need]
			p.n, p.refs = n, 0
			return p
		}
	}
	return &Prefix{n: n, kv: make([]float32, need), logits: make([]float32, e.d.vocab), kvDim: e.d.kvDim}
}
