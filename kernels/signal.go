package kernels

import (
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// spinFor is how long wait polls before it blocks.
const spinFor = 50 * time.Microsecond

// signal is a one-waiter wake-up that parks its waiter without allocating.
//
// Parking on a channel or a sync primitive takes a runtime sudog from a per-P cache.
// The pool's goroutines park on one P and wake on another, so sudogs pile up in one
// P's cache while the other's runs dry, and every GC empties the central cache that
// would rebalance them: a multi-threaded pool then allocated a 112-byte sudog every
// few hundred calls, forever (about one to three per bench training step). A read
// from a pipe parks in the network poller instead, which needs no sudog.
//
// state is idle, notified, or sleeping (the waiter has committed to a blocking read).
// notify writes one byte only when the waiter sleeps, so every byte written is read by
// exactly the wait that slept for it.
type signal struct {
	state atomic.Int32
	r, w  *os.File
	ch    chan struct{} // used instead of the pipe when the OS cannot make one
	buf   [1]byte
	one   [1]byte
}

const (
	sigIdle int32 = iota
	sigNotified
	sigSleeping
)

func newSignal() *signal {
	s := &signal{one: [1]byte{1}}
	r, w, err := os.Pipe()
	if err != nil {
		// No pipes here (or out of descriptors): a channel still works, it may just
		// allocate a sudog now and then.
		s.ch = make(chan struct{}, 1)
		return s
	}
	s.r, s.w = r, w
	return s
}

// notify wakes the waiter, or makes its next wait return at once.
func (s *signal) notify() {
	if s.state.Swap(sigNotified) != sigSleeping {
		return
	}
	if s.ch != nil {
		s.ch <- struct{}{}
		return
	}
	// The reader is blocked or about to be, so the pipe never holds more than a byte
	// and this write does not block. An error means the signal was closed.
	_, _ = s.w.Write(s.one[:])
}

// wait blocks until notify has been called since the last wait returned. It reports
// false once the signal is closed and no notification is pending.
func (s *signal) wait() bool {
	// Pool calls often come microseconds apart, and a caller waits for a worker's last
	// chunk about as long: spin briefly before paying for a pipe round trip and a
	// wake-up through the poller.
	for start := time.Now(); time.Since(start) < spinFor; {
		if s.state.CompareAndSwap(sigNotified, sigIdle) {
			return true
		}
		runtime.Gosched()
	}
	for {
		if s.state.CompareAndSwap(sigNotified, sigIdle) {
			return true
		}
		if !s.state.CompareAndSwap(sigIdle, sigSleeping) {
			continue // a notify came in between: take it
		}
		if s.ch != nil {
			if _, ok := <-s.ch; !ok {
				s.state.CompareAndSwap(sigSleeping, sigIdle)
				return false
			}
			continue
		}
		if _, err := s.r.Read(s.buf[:]); err != nil {
			s.state.CompareAndSwap(sigSleeping, sigIdle)
			return false // write end closed: the pool is closing
		}
	}
}

// close makes a blocked or later wait return false once no notification is pending.
// Only the waiter may call closeRead, after its last wait.
func (s *signal) close() {
	if s.ch != nil {
		close(s.ch)
		return
	}
	_ = s.w.Close()
}

// closeRead releases the waiter's end of the pipe.
func (s *signal) closeRead() {
	if s.r != nil {
		_ = s.r.Close()
	}
}
