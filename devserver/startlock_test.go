package devserver

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConcurrentStartsWithPortFallbackNeverShareAPort starts three servers at the same
// moment, all asking for the same gRPC and UI ports with PortFallback: one gets them, the
// others fall back to free ports, and every server answers on its own port. Without the
// start lock two of them could both see the port free and one would die binding it.
func TestConcurrentStartsWithPortFallbackNeverShareAPort(t *testing.T) {
	// Ports that were free a moment ago, as the demo's defaults would be.
	ps, err := freePorts(DefaultIP, 2)
	require.NoError(t, err)
	grpcPort, uiPort := ps[0], ps[1]

	const n = 3
	servers := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			servers[i], errs[i] = Start(ctx, Options{DataDir: t.TempDir(), GRPCPort: grpcPort, UIPort: uiPort, PortFallback: true})
		}()
	}
	close(start)
	wg.Wait()
	t.Cleanup(func() {
		for _, s := range servers {
			if s != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				assert.NoError(t, s.Close(ctx))
				cancel()
			}
		}
	})
	seen := map[int]bool{}
	fellBack := 0
	for i, s := range servers {
		require.NoError(t, errs[i], "server %d", i)
		p := portOf(t, s.FrontendAddress())
		assert.False(t, seen[p], "gRPC port %d given to two servers", p)
		seen[p] = true
		if s.FellBack() {
			fellBack++
			assert.NotEqual(t, grpcPort, p)
		} else {
			assert.Equal(t, grpcPort, p)
			assert.Contains(t, s.UIURL(), ":"+strconv.Itoa(uiPort))
		}
		conn, err := net.DialTimeout("tcp", s.FrontendAddress(), 5*time.Second)
		require.NoError(t, err, "server %d answers", i)
		conn.Close()
		_, err = dialTest(t, s).CheckHealth(context.Background(), nil)
		require.NoError(t, err, "server %d is healthy", i)
	}
	assert.Equal(t, n-1, fellBack, "exactly one server got the requested ports")
}
