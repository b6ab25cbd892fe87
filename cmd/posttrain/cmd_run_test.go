package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/configs"
)

func TestUILink(t *testing.T) {
	tests := []struct {
		addr, ns string
		port     int
		want     string
	}{
		{"127.0.0.1:7233", "default", 8233, "http://127.0.0.1:8233/namespaces/default/workflows/run-1"},
		{"temporal.internal:7233", "ml", 0, "http://temporal.internal:8233/namespaces/ml/workflows/run-1"},
		{":7233", "default", 9000, "http://127.0.0.1:9000/namespaces/default/workflows/run-1"},
	}
	for _, tc := range tests {
		cfg := &configs.Config{Temporal: configs.TemporalConfig{Address: tc.addr, Namespace: tc.ns, UIPort: tc.port}}
		require.Equal(t, tc.want, uiLink(cfg, "run-1"))
	}
}

func TestRunCLIRejectsBadInputBeforeConnecting(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"run", "start", "--annotator", "crowd"}, `input annotator: "crowd" is not simulated, file or human`},
		{[]string{"run", "start", "--rounds", "-2"}, "input rounds: must be >= 0, got -2"},
		{[]string{"run", "start", "--annotation-timeout", "soon"}, `input annotation_timeout: "soon" is not a positive duration`},
		{[]string{"schedule", "create"}, "give exactly one of --every and --cron"},
		{[]string{"schedule", "create", "--every", "1h", "--cron", "0 2 * * *"}, "give exactly one of --every and --cron"},
		{[]string{"run", "approve", "x"}, `required flag(s) "round" not set`},
		{[]string{"annotations", "submit", "only-id"}, "accepts 2 arg(s), received 1"},
	}
	for _, tc := range tests {
		t.Run(tc.args[0]+" "+tc.args[1], func(t *testing.T) {
			_, err := runDSCLI(t, tc.args...)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}
