package demotask

import (
	"fmt"
	"strconv"
	"strings"
)

func fmtSscanf(s, format string, args ...any) (int, error) { return fmt.Sscanf(s, format, args...) }
func itoa(n int) string                                    { return strconv.Itoa(n) }
func toUpperASCII(s string) string                         { return strings.ToUpper(s) }
