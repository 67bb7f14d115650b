package zzglob

import "testing"

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, path string
		want          bool
	}{
		{"*.txt", "a.txt", true},
		{"*.txt", "d/a.txt", false},
		{"**/*.txt", "a.txt", true},
		{"**/*.txt", "d/e/a.txt", true},
		{"d/**", "d/e/a.txt", true},
		{"d/{a,b}.go", "d/b.go", true},
		{"d/{a,b}.go", "d/c.go", false},
		{"file[0-9].log", "file7.log", true},
		{"file[!0-9].log", "file7.log", false},
		{"a\\*b", "a*b", true},
		{"./x/*.md", "x/y.md", true},
	}
	for _, c := range cases {
		p, err := Parse(c.pattern)
		if err != nil {
			t.Fatalf("%s: %v", c.pattern, err)
		}
		if got := p.Match(c.path); got != c.want {
			t.Errorf("%q.Match(%q) = %v, want %v", c.pattern, c.path, got, c.want)
		}
	}
}
