package codeagent

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The blueprint's rules, used when no LLM is configured: a few task families
// recognised by keyword, each with a real program parameterised by the
// number in the description. Anything else is not guessed at.

var numberRe = regexp.MustCompile(`\d+`)

// firstNumber returns the first integer in s, or def.
func firstNumber(s string, def int) int {
	if m := numberRe.FindString(s); m != "" {
		if n, err := strconv.Atoi(m); err == nil {
			return n
		}
	}
	return def
}

// ruleProgram returns a program for description, or "" when no rule applies.
func ruleProgram(description string) (program, rule string) {
	d := strings.ToLower(description)
	switch {
	case strings.Contains(d, "fibonacci"):
		n := min(firstNumber(d, 10), 10000)
		return fmt.Sprintf(`def fibonacci(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


print(fibonacci(%d))
`, n), "fibonacci"
	case strings.Contains(d, "factorial"):
		n := min(firstNumber(d, 5), 2000)
		return fmt.Sprintf(`import math


def factorial(n):
    return math.prod(range(1, n + 1))


print(factorial(%d))
`, n), "factorial"
	case strings.Contains(d, "prime"):
		n := min(firstNumber(d, 100), 10_000_000)
		return fmt.Sprintf(`def primes_below(n):
    sieve = bytearray([1]) * n
    sieve[:2] = b"\x00\x00"[:n]
    for i in range(2, int(n ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytearray(len(range(i * i, n, i)))
    return [i for i in range(n) if sieve[i]]


print(primes_below(%d))
`, n), "primes"
	}
	return "", ""
}
