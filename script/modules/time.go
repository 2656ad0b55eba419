package modules

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// processStart anchors time.monotonic and time.perf_counter; only differences
// between their values mean anything, as in Python.
var processStart = time.Now()

// timeModule is Python's time: sleep (ended early by the run's cancellation),
// time, monotonic, perf_counter (and their _ns forms) and strftime.
func (m *Modules) timeModule() *starlarkstruct.Module {
	now := func(f func() starlark.Value) builtinFunc {
		return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
				return nil, err
			}
			return f(), nil
		}
	}
	sinceStart := func() time.Duration { return time.Since(processStart) }
	return module("time", map[string]builtinFunc{
		"sleep": m.sleep,
		"time": now(func() starlark.Value {
			return starlark.Float(float64(time.Now().UnixNano()) / 1e9)
		}),
		"time_ns": now(func() starlark.Value { return starlark.MakeInt64(time.Now().UnixNano()) }),
		"monotonic": now(func() starlark.Value {
			return starlark.Float(sinceStart().Seconds())
		}),
		"monotonic_ns": now(func() starlark.Value { return starlark.MakeInt64(int64(sinceStart())) }),
		"perf_counter": now(func() starlark.Value {
			return starlark.Float(sinceStart().Seconds())
		}),
		"perf_counter_ns": now(func() starlark.Value { return starlark.MakeInt64(int64(sinceStart())) }),
		"strftime": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var format string
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &format); err != nil {
				return nil, err
			}
			s, err := strftime(time.Now(), format, true)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
			return starlark.String(s), nil
		},
	}, nil)
}

// sleep is time.sleep(secs): it logs nothing and returns early with an error
// when the run's context is cancelled.
func (m *Modules) sleep(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var secs starlark.Value
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &secs); err != nil {
		return nil, err
	}
	f, ok := starlark.AsFloat(secs)
	if !ok {
		return nil, fmt.Errorf("%s: want int or float seconds, got %s", b.Name(), secs.Type())
	}
	if f < 0 || math.IsNaN(f) {
		return nil, fmt.Errorf("%s: sleep length must be non-negative, got %v", b.Name(), secs)
	}
	d := time.Duration(math.MaxInt64)
	if f < float64(math.MaxInt64)/1e9 {
		d = time.Duration(f * 1e9)
	}
	if err := sleepCtx(m.ctx(th), d); err != nil {
		return nil, fmt.Errorf("%s: interrupted: %w", b.Name(), err)
	}
	return starlark.None, nil
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// strftime formats t like C's strftime in the C locale. zone says whether t's
// zone is known (aware): if not, %z and %Z produce "".
func strftime(t time.Time, format string, zone bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(format) {
			b.WriteByte('%')
			break
		}
		switch d := format[i]; d {
		case '%':
			b.WriteByte('%')
		case 'a':
			b.WriteString(t.Format("Mon"))
		case 'A':
			b.WriteString(t.Format("Monday"))
		case 'b', 'h':
			b.WriteString(t.Format("Jan"))
		case 'B':
			b.WriteString(t.Format("January"))
		case 'c':
			b.WriteString(t.Format("Mon Jan _2 15:04:05 2006"))
		case 'C':
			fmt.Fprintf(&b, "%02d", t.Year()/100)
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'D':
			b.WriteString(t.Format("01/02/06"))
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'f':
			fmt.Fprintf(&b, "%06d", t.Nanosecond()/1000)
		case 'F':
			b.WriteString(t.Format("2006-01-02"))
		case 'G':
			y, _ := t.ISOWeek()
			fmt.Fprintf(&b, "%d", y)
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'I':
			fmt.Fprintf(&b, "%02d", (t.Hour()+11)%12+1)
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'n':
			b.WriteByte('\n')
		case 'p':
			b.WriteString(t.Format("PM"))
		case 'R':
			b.WriteString(t.Format("15:04"))
		case 's':
			fmt.Fprintf(&b, "%d", t.Unix())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 't':
			b.WriteByte('\t')
		case 'T', 'X':
			b.WriteString(t.Format("15:04:05"))
		case 'u':
			fmt.Fprintf(&b, "%d", (int(t.Weekday())+6)%7+1)
		case 'U':
			fmt.Fprintf(&b, "%02d", (t.YearDay()+6-int(t.Weekday()))/7)
		case 'V':
			_, w := t.ISOWeek()
			fmt.Fprintf(&b, "%02d", w)
		case 'w':
			fmt.Fprintf(&b, "%d", int(t.Weekday()))
		case 'W':
			fmt.Fprintf(&b, "%02d", (t.YearDay()+6-(int(t.Weekday())+6)%7)/7)
		case 'x':
			b.WriteString(t.Format("01/02/06"))
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'Y':
			fmt.Fprintf(&b, "%d", t.Year())
		case 'z':
			if zone {
				b.WriteString(t.Format("-0700"))
			}
		case 'Z':
			if zone {
				b.WriteString(t.Format("MST"))
			}
		default:
			return "", fmt.Errorf("unsupported format directive %%%c", d)
		}
	}
	return b.String(), nil
}
