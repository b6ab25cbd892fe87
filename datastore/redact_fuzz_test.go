package datastore_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
)

// FuzzRedactDSN builds URL and keyword/value DSNs around arbitrary passwords and checks
// that RedactDSN never lets the password through.
func FuzzRedactDSN(f *testing.F) {
	for _, pw := range []string{"hunter2", "p@ss:w/o?rd#1", "with space", "quote'in", `back\slash`, "ünïcode", "a&password=b"} {
		f.Add(pw, "db.example")
	}
	f.Fuzz(func(t *testing.T, pw, host string) {
		// A password too short or present elsewhere in the DSN cannot be told apart.
		if len(pw) < 4 || strings.ContainsAny(host, "/?#@:'\\ ") || host == "" {
			return
		}
		secret := "PW" + pw + "WP"
		u := url.URL{Scheme: "postgres", User: url.UserPassword("alice", secret), Host: host + ":5432", Path: "/pt"}
		kvQuoted := "host=" + host + " user=alice password='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(secret) + "' dbname=pt"
		q := url.Values{"password": {secret}}
		query := "postgres://alice@" + host + ":5432/pt?" + q.Encode()
		for _, dsn := range []string{u.String(), kvQuoted, query} {
			red := datastore.RedactDSN(dsn)
			require.NotContains(t, red, secret, "DSN %q", dsn)
			require.NotContains(t, red, url.QueryEscape(secret))
			require.NotContains(t, red, url.PathEscape(secret))
			require.NotContains(t, red, (&url.URL{User: url.UserPassword("", secret)}).User.String())
		}
	})
}
