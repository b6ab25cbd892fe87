// Package reward trains and evaluates Bradley-Terry reward models (a backbone plus a score
// head), including ranked triples (edited > chosen > rejected), margins and centering.
package reward
