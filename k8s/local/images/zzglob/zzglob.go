// Package zzglob is Scaledkite's own small implementation of the API of drjosh.dev/zzglob that
// buildkite-agent v3.138.3 calls (Parse, ExpandTilde, Pattern.Match, Pattern.Glob, MultiGlob,
// WalkIntermediateDirs, TraverseSymlinks). The Go module proxy answers 403 for that module, so
// the local agent image is built with this one in its place (see ../build-images.sh). It is used
// by the agent for artifact upload globs, cache keys and `if_changed`; it supports `*`, `?`,
// `[...]`, `{a,b}`, `**` and `\` escapes. Nothing outside the local test images uses it.
package zzglob

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Pattern is a parsed glob.
type Pattern struct {
	raw  string
	root string // the leading part without wildcards, walked from
	re   *regexp.Regexp
}

type parseConfig struct{ expandTilde bool }

// ParseOption changes how a pattern is parsed.
type ParseOption func(*parseConfig)

// ExpandTilde makes a leading "~/" stand for the home directory (default true).
func ExpandTilde(enable bool) ParseOption { return func(c *parseConfig) { c.expandTilde = enable } }

type globConfig struct{ walkIntermediateDirs, traverseSymlinks bool }

// GlobOption changes how Glob walks.
type GlobOption func(*globConfig)

// WalkIntermediateDirs makes Glob call the callback for the walk's root directory too.
func WalkIntermediateDirs(enable bool) GlobOption {
	return func(c *globConfig) { c.walkIntermediateDirs = enable }
}

// TraverseSymlinks makes Glob descend into symlinked directories (default true).
func TraverseSymlinks(enable bool) GlobOption { return func(c *globConfig) { c.traverseSymlinks = enable } }

func hasMeta(s string) bool { return strings.ContainsAny(s, "*?[{\\") }

// Parse parses a glob pattern.
func Parse(pattern string, opts ...ParseOption) (*Pattern, error) {
	cfg := parseConfig{expandTilde: true}
	for _, o := range opts {
		o(&cfg)
	}
	p := strings.TrimPrefix(filepath.ToSlash(pattern), "./")
	if cfg.expandTilde && (p == "~" || strings.HasPrefix(p, "~/")) {
		if home, err := os.UserHomeDir(); err == nil {
			p = filepath.ToSlash(home) + p[1:]
		}
	}
	expr, err := translate(p)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile("^" + expr + "$")
	if err != nil {
		return nil, err
	}
	segs := strings.Split(p, "/")
	fixed := []string{}
	for _, s := range segs[:len(segs)-1] {
		if hasMeta(s) {
			break
		}
		fixed = append(fixed, s)
	}
	root := strings.Join(fixed, "/")
	if root == "" {
		root = "."
		if strings.HasPrefix(p, "/") {
			root = "/"
		}
	}
	return &Pattern{raw: pattern, root: root, re: re}, nil
}

// translate turns a glob into a regular expression over slash-separated paths.
func translate(p string) (string, error) {
	var b strings.Builder
	braces := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			if i+1 >= len(p) {
				return "", errors.New("zzglob: trailing backslash")
			}
			i++
			b.WriteString(regexp.QuoteMeta(string(p[i])))
		case c == '*' && i+1 < len(p) && p[i+1] == '*':
			i++
			if i+1 < len(p) && p[i+1] == '/' {
				i++
				b.WriteString("(?:[^/]*/)*") // "**/": any number of directories, none included
			} else {
				b.WriteString(".*")
			}
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[':
			end := strings.IndexByte(p[i+1:], ']')
			if end < 0 {
				return "", errors.New("zzglob: unclosed [ in pattern")
			}
			class := p[i+1 : i+1+end]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + strings.ReplaceAll(class, "\\", "\\\\") + "]")
			i += end + 1
		case c == '{':
			braces++
			b.WriteString("(?:")
		case c == '}' && braces > 0:
			braces--
			b.WriteString(")")
		case c == ',' && braces > 0:
			b.WriteString("|")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	if braces != 0 {
		return "", errors.New("zzglob: unclosed { in pattern")
	}
	return b.String(), nil
}

// String returns the pattern as written.
func (p *Pattern) String() string { return p.raw }

// Match reports whether a slash- or OS-separated path matches the whole pattern.
func (p *Pattern) Match(path string) bool {
	return p.re.MatchString(strings.TrimPrefix(filepath.ToSlash(path), "./"))
}

// Glob walks the file system from the pattern's fixed root and calls fn for every matching path.
func (p *Pattern) Glob(fn fs.WalkDirFunc, opts ...GlobOption) error {
	return MultiGlob(context.Background(), []*Pattern{p}, fn, opts...)
}

// MultiGlob globs several patterns, calling fn once per matching path.
func MultiGlob(ctx context.Context, patterns []*Pattern, fn fs.WalkDirFunc, opts ...GlobOption) error {
	cfg := globConfig{traverseSymlinks: true}
	for _, o := range opts {
		o(&cfg)
	}
	seen := map[string]bool{}
	for _, p := range patterns {
		if err := p.walk(ctx, p.root, cfg, seen, fn); err != nil {
			return err
		}
	}
	return nil
}

func (p *Pattern) walk(ctx context.Context, root string, cfg globConfig, seen map[string]bool, fn fs.WalkDirFunc) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if err != nil {
			if path == root {
				return fn(path, d, err)
			}
			return fn(path, d, err)
		}
		if path == root && cfg.walkIntermediateDirs && d.IsDir() {
			if err := fn(path, d, nil); err != nil {
				return err
			}
		}
		if cfg.traverseSymlinks && d.Type()&fs.ModeSymlink != 0 {
			if info, statErr := os.Stat(path); statErr == nil && info.IsDir() {
				return p.walk(ctx, path, cfg, seen, fn)
			}
		}
		if path != root && p.Match(path) && !seen[path] {
			seen[path] = true
			return fn(path, d, nil)
		}
		return nil
	})
}
