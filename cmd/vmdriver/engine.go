package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vmdriver/vmdriver/script"
	"github.com/vmdriver/vmdriver/script/cpython"
)

// engine is the script engine a run uses.
type engine struct {
	// python is the CPython interpreter to run; "" for Starlark.
	python  string
	version string
	// why says, for a run on CPython, what chose it.
	why string
}

// String names the engine for check's output.
func (e engine) String() string {
	if e.python == "" {
		return "Starlark"
	}
	return fmt.Sprintf("CPython %s (%s)", e.version, e.python)
}

// chooseEngine checks the script and picks its engine: the one the
// flags force, else Starlark when it accepts the script and CPython when
// it does not and an interpreter is at hand. Errors are the script's
// (*script.ScriptError, several joined) or, for --python, a missing
// interpreter (wrapping hosttools.ErrMissing).
func chooseEngine(ctx context.Context, f *runFlags, filename string, src []byte, opts script.CheckOptions) (engine, error) {
	if f.starlark {
		return engine{}, script.CheckWith(filename, src, opts)
	}
	if f.python {
		return checkPython(ctx, f, filename, src, opts, "--python")
	}
	refused := script.Accepts(filename, src, opts)
	if refused == nil {
		return engine{}, nil
	}
	if opts.ForkSubtests {
		// A script cut wrongly for forking (a statement between
		// subtests, a name only another subtest binds) is wrong on
		// either engine: say so in Starlark's words.
		whole := opts
		whole.ForkSubtests = false
		if script.Accepts(filename, src, whole) == nil {
			return engine{}, refused
		}
	}
	if _, err := cpython.Find(f.pythonBin); err != nil {
		return engine{}, errors.Join(refused, fmt.Errorf("the Starlark engine refuses the script, and there is no CPython to run it instead: %w", err))
	}
	return checkPython(ctx, f, filename, src, opts, "the Starlark engine refuses the script: "+firstLine(refused))
}

// checkPython checks the script with CPython.
func checkPython(ctx context.Context, f *runFlags, filename string, src []byte, opts script.CheckOptions, why string) (engine, error) {
	py, err := cpython.Find(f.pythonBin)
	if err != nil {
		return engine{}, err
	}
	v, err := cpython.Check(ctx, py, filename, src, opts)
	if err != nil {
		return engine{}, err
	}
	return engine{python: py, version: v, why: why}, nil
}

// firstLine is the first line of an error's text.
func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}
