package reward

// TokenSimilarity is 1 - Levenshtein(a, b) / max(len(a), len(b)) over token ids: 1 for
// identical sequences (two empty ones included), 0 when no token can be kept in place.
// Insertions, deletions and substitutions cost 1 each, so a response that differs from
// another by one token in twenty has similarity 0.95. It runs in O(len(a)*len(b)) time
// and O(min(len(a), len(b))) memory.
func TokenSimilarity(a, b []int32) float64 {
	n := max(len(a), len(b))
	if n == 0 {
		return 1
	}
	return 1 - float64(editDistance(a, b))/float64(n)
}

// editDistance is the Levenshtein distance between two id sequences.
func editDistance(a, b []int32) int {
	if len(a) < len(b) {
		a, b = b, a
	}
	// prev[j] is the distance between a[:i] and b[:j]; one row of the table is enough.
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
