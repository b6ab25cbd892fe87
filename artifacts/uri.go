package artifacts

import (
	"fmt"
	"strings"
)

// URI returns the string recorded in the artifacts table's uri column for content
// stored under sha in a backend: "<backend>:<sha256>", e.g. "fs:9f86d0...".
func URI(backend, sha string) string { return backend + ":" + sha }

// ParseURI splits a URI made by URI into its backend and sha256.
func ParseURI(uri string) (backend, sha string, err error) {
	backend, sha, ok := strings.Cut(uri, ":")
	if !ok || backend == "" {
		return "", "", fmt.Errorf("artifact uri %q: want <backend>:<sha256>", uri)
	}
	if err := ValidateSHA256(sha); err != nil {
		return "", "", fmt.Errorf("artifact uri %q: %w", uri, err)
	}
	return backend, sha, nil
}
