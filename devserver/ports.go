package devserver

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// checkPortFree fails with a clear message when ip:port cannot be bound. The Temporal
// server and the UI server both panic or exit on a taken port, so Start asks first.
func checkPortFree(what, ip string, port int) error {
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%s port %d on %s is already in use (another Temporal server, or another `posttrain dev`?): stop it or choose another port", what, port, ip)
		}
		return fmt.Errorf("%s address %s cannot be bound: %w", what, addr, err)
	}
	return l.Close()
}

// freePorts returns n distinct ports on ip that were free a moment ago. All listeners
// are held open until every port is chosen, so the n ports differ.
func freePorts(ip string, n int) ([]int, error) {
	ports := make([]int, 0, n)
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("pick a free port on %s: %w", ip, err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// dialHost is the host clients connect to for a server bound on ip: the loopback
// address when the server listens on every interface.
func dialHost(ip string) string {
	if p := net.ParseIP(ip); p != nil && p.IsUnspecified() {
		if p.To4() != nil {
			return "127.0.0.1"
		}
		return "::1"
	}
	return ip
}
