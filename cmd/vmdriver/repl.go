package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.starlark.net/starlark"
	"golang.org/x/term"

	"github.com/vmdriver/vmdriver/script"
)

// repl is the interactive mode (-I): a line-editing prompt with every
// test symbol; test_script() runs the configured script. Blocks (a line
// ending in ':') continue until an empty line, like Python's prompt.
func repl(ctx context.Context, opts script.Options, stdin io.Reader, stdout, stderr io.Writer) int {
	s, err := script.NewSession(opts)
	if err != nil {
		fmt.Fprintf(stderr, "vmdriver: %v\n", err)
		return exitInfra
	}
	defer s.Close()
	globals := starlark.StringDict{}
	for k, v := range s.Globals() {
		globals[k] = v
	}

	read, restore := lineReader(stdin, stdout)
	defer restore()
	fmt.Fprintln(stdout, "vmdriver interactive mode: every test symbol is defined; test_script() runs the test script; Ctrl-D ends.")
	for {
		src, err := readChunk(read)
		if err != nil {
			fmt.Fprintln(stdout)
			return exitOK
		}
		if strings.TrimSpace(src) == "" {
			continue
		}
		if err := s.Exec(ctx, "<stdin>", []byte(src), globals); err != nil {
			var se *script.ScriptError
			if errors.As(err, &se) {
				fmt.Fprint(stderr, se.Traceback())
			} else {
				fmt.Fprintf(stderr, "error: %v\n", err)
			}
		}
		if ctx.Err() != nil {
			return exitFail
		}
	}
}

// readChunk reads one statement, or a whole block.
func readChunk(read func(prompt string) (string, error)) (string, error) {
	line, err := read(">>> ")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(line + "\n")
	if !strings.HasSuffix(strings.TrimSpace(line), ":") {
		return b.String(), nil
	}
	for {
		line, err := read("... ")
		if err != nil || strings.TrimSpace(line) == "" {
			return b.String(), nil
		}
		b.WriteString(line + "\n")
	}
}

// lineReader returns a line source with editing and history on a
// terminal, plain lines otherwise.
func lineReader(stdin io.Reader, stdout io.Writer) (read func(prompt string) (string, error), restore func()) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		if old, err := term.MakeRaw(fd); err == nil {
			t := term.NewTerminal(struct {
				io.Reader
				io.Writer
			}{f, stdout}, "")
			return func(prompt string) (string, error) {
					t.SetPrompt(prompt)
					return t.ReadLine()
				}, func() {
					term.Restore(fd, old)
				}
		}
	}
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	return func(prompt string) (string, error) {
		fmt.Fprint(stdout, prompt)
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return "", err
			}
			return "", io.EOF
		}
		return sc.Text(), nil
	}, func() {}
}
