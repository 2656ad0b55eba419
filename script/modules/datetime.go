package modules

import (
	"fmt"
	"math"
	"math/big"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// Timedelta is Python's datetime.timedelta as a Starlark value: a duration
// with microsecond resolution (the Duration is always a whole number of
// microseconds), limited to Go's range of about ±292 years.
//
// It supports + and - (with timedeltas and datetimes), unary -, * by int or
// float, / by int, float (→ timedelta) or timedelta (→ float), // and % by
// timedelta, comparisons, the attributes days, seconds and microseconds
// (normalized as in Python: 0 <= seconds < 86400, 0 <= microseconds < 10⁶) and
// total_seconds(). str() is Python's ("1 day, 2:03:04.500000").
type Timedelta struct{ time.Duration }

const (
	usPerSecond = 1_000_000
	usPerDay    = 86400 * usPerSecond
	maxMicros   = math.MaxInt64 / 1000
)

var errTimedeltaRange = fmt.Errorf("timedelta out of range (at most ±%d days)", maxMicros/usPerDay)

// micros returns the duration in microseconds.
func (td Timedelta) micros() int64 { return int64(td.Duration / time.Microsecond) }

func timedeltaFromMicros(us *big.Int) (Timedelta, error) {
	if !us.IsInt64() || us.Int64() > maxMicros || us.Int64() < -maxMicros {
		return Timedelta{}, errTimedeltaRange
	}
	return Timedelta{time.Duration(us.Int64()) * time.Microsecond}, nil
}

// roundHalfEven rounds a rational to the nearest integer, ties to even.
func roundHalfEven(r *big.Rat) *big.Int {
	q, rem := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	// r = q + rem/den with rem carrying r's sign; compare 2|rem| with den.
	twice := new(big.Int).Abs(rem)
	twice.Lsh(twice, 1)
	c := twice.Cmp(r.Denom())
	if c > 0 || (c == 0 && q.Bit(0) == 1) {
		if r.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return q
}

// AsDuration converts a timeout argument: an int or float number of seconds,
// or a timedelta. It reports false for other types (bool included), NaN,
// infinities and values beyond time.Duration's range. Negative values are
// returned as they are; the caller decides whether they make sense.
func AsDuration(v starlark.Value) (time.Duration, bool) {
	switch x := v.(type) {
	case Timedelta:
		return x.Duration, true
	case starlark.Int:
		n, ok := x.Int64()
		if !ok || n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second) {
			return 0, false
		}
		return time.Duration(n) * time.Second, true
	case starlark.Float:
		ns := math.Round(float64(x) * 1e9)
		if math.IsNaN(ns) || ns >= math.MaxInt64 || ns <= math.MinInt64 {
			return 0, false
		}
		return time.Duration(ns), true
	}
	return 0, false
}

// String implements starlark.Value, as Python's str(timedelta).
func (td Timedelta) String() string {
	us := td.micros()
	days := floorDiv(us, usPerDay)
	rem := us - days*usPerDay
	secs, micro := rem/usPerSecond, rem%usPerSecond
	s := fmt.Sprintf("%d:%02d:%02d", secs/3600, secs/60%60, secs%60)
	if days != 0 {
		plural := "s"
		if days == 1 || days == -1 {
			plural = ""
		}
		s = fmt.Sprintf("%d day%s, %s", days, plural, s)
	}
	if micro != 0 {
		s += fmt.Sprintf(".%06d", micro)
	}
	return s
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// Type implements starlark.Value.
func (td Timedelta) Type() string { return "timedelta" }

// Freeze implements starlark.Value; timedeltas are immutable.
func (td Timedelta) Freeze() {}

// Truth implements starlark.Value: zero is false.
func (td Timedelta) Truth() starlark.Bool { return td.Duration != 0 }

// Hash implements starlark.Value.
func (td Timedelta) Hash() (uint32, error) {
	us := uint64(td.micros())
	return uint32(us ^ us>>32), nil
}

// CompareSameType implements starlark.Comparable.
func (td Timedelta) CompareSameType(op syntax.Token, y starlark.Value, _ int) (bool, error) {
	a, b := td.Duration, y.(Timedelta).Duration
	cmp := 0
	if a < b {
		cmp = -1
	} else if a > b {
		cmp = 1
	}
	return compareOrder(op, cmp)
}

// Unary implements starlark.HasUnary.
func (td Timedelta) Unary(op syntax.Token) (starlark.Value, error) {
	switch op {
	case syntax.MINUS:
		return Timedelta{-td.Duration}, nil
	case syntax.PLUS:
		return td, nil
	}
	return nil, nil
}

// Binary implements starlark.HasBinary.
func (td Timedelta) Binary(op syntax.Token, y starlark.Value, side starlark.Side) (starlark.Value, error) {
	us := big.NewInt(td.micros())
	switch y := y.(type) {
	case Timedelta:
		a, b := us, big.NewInt(y.micros())
		if side == starlark.Right {
			a, b = b, a
		}
		switch op {
		case syntax.PLUS:
			return timedeltaFromMicros(new(big.Int).Add(a, b))
		case syntax.MINUS:
			return timedeltaFromMicros(new(big.Int).Sub(a, b))
		case syntax.SLASH:
			if b.Sign() == 0 {
				return nil, fmt.Errorf("timedelta division by zero")
			}
			f, _ := new(big.Rat).SetFrac(a, b).Float64()
			return starlark.Float(f), nil
		case syntax.SLASHSLASH, syntax.PERCENT:
			if b.Sign() == 0 {
				return nil, fmt.Errorf("timedelta division by zero")
			}
			q, m := new(big.Int).DivMod(a, b, new(big.Int))
			// DivMod is Euclidean; Python floors (the remainder has b's sign).
			if m.Sign() != 0 && b.Sign() < 0 {
				q.Sub(q, big.NewInt(1))
				m.Add(m, b)
			}
			if op == syntax.SLASHSLASH {
				return starlark.MakeBigInt(q), nil
			}
			return timedeltaFromMicros(m)
		}
	case starlark.Int:
		n := y.BigInt()
		switch {
		case op == syntax.STAR:
			return timedeltaFromMicros(new(big.Int).Mul(us, n))
		case side == starlark.Left && (op == syntax.SLASH || op == syntax.SLASHSLASH):
			if n.Sign() == 0 {
				return nil, fmt.Errorf("timedelta division by zero")
			}
			if op == syntax.SLASHSLASH {
				q, m := new(big.Int).DivMod(us, n, new(big.Int))
				if m.Sign() != 0 && n.Sign() < 0 {
					q.Sub(q, big.NewInt(1))
				}
				return timedeltaFromMicros(q)
			}
			return timedeltaFromMicros(roundHalfEven(new(big.Rat).SetFrac(us, n)))
		}
	case starlark.Float:
		f := float64(y)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("timedelta %s %s: cannot use a non-finite float", op, y)
		}
		r := new(big.Rat).SetFloat64(f)
		switch {
		case op == syntax.STAR:
			return timedeltaFromMicros(roundHalfEven(r.Mul(r, new(big.Rat).SetInt(us))))
		case side == starlark.Left && op == syntax.SLASH:
			if f == 0 {
				return nil, fmt.Errorf("timedelta division by zero")
			}
			return timedeltaFromMicros(roundHalfEven(r.Quo(new(big.Rat).SetInt(us), r)))
		}
	}
	return nil, nil
}

// Attr implements starlark.HasAttrs.
func (td Timedelta) Attr(name string) (starlark.Value, error) {
	us := td.micros()
	days := floorDiv(us, usPerDay)
	rem := us - days*usPerDay
	switch name {
	case "days":
		return starlark.MakeInt64(days), nil
	case "seconds":
		return starlark.MakeInt64(rem / usPerSecond), nil
	case "microseconds":
		return starlark.MakeInt64(rem % usPerSecond), nil
	case "total_seconds":
		return starlark.NewBuiltin("timedelta.total_seconds", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
				return nil, err
			}
			return starlark.Float(float64(us) / usPerSecond), nil
		}), nil
	}
	return nil, nil
}

// AttrNames implements starlark.HasAttrs.
func (td Timedelta) AttrNames() []string {
	return []string{"days", "microseconds", "seconds", "total_seconds"}
}

// newTimedelta is datetime.timedelta(days=0, seconds=0, microseconds=0,
// milliseconds=0, minutes=0, hours=0, weeks=0); int and float arguments, the
// sum rounded to microseconds half to even.
func newTimedelta(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	names := []string{"days", "seconds", "microseconds", "milliseconds", "minutes", "hours", "weeks"}
	factors := []int64{usPerDay, usPerSecond, 1, 1000, 60 * usPerSecond, 3600 * usPerSecond, 7 * usPerDay}
	vals := make([]starlark.Value, len(names))
	pairs := make([]any, 0, 2*len(names))
	for i, n := range names {
		pairs = append(pairs, n+"?", &vals[i])
	}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, pairs...); err != nil {
		return nil, err
	}
	total := new(big.Rat)
	for i, v := range vals {
		var r *big.Rat
		switch x := v.(type) {
		case nil:
			continue
		case starlark.Int:
			r = new(big.Rat).SetInt(x.BigInt())
		case starlark.Float:
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("%s: %s must be finite, got %s", b.Name(), names[i], x)
			}
			r = new(big.Rat).SetFloat64(float64(x))
		default:
			return nil, fmt.Errorf("%s: for parameter %s: got %s, want int or float", b.Name(), names[i], v.Type())
		}
		total.Add(total, r.Mul(r, new(big.Rat).SetInt64(factors[i])))
	}
	td, err := timedeltaFromMicros(roundHalfEven(total))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return td, nil
}

// datetimeModule is Python's datetime: timedelta, datetime (now, utcnow,
// fromtimestamp, fromisoformat, and the constructor) and timezone.utc.
func datetimeModule() *starlarkstruct.Module {
	return &starlarkstruct.Module{Name: "datetime", Members: starlark.StringDict{
		"timedelta": starlark.NewBuiltin("datetime.timedelta", newTimedelta),
		"datetime":  datetimeClass{},
		"timezone":  timezoneClass{},
		"MINYEAR":   starlark.MakeInt(1),
		"MAXYEAR":   starlark.MakeInt(9999),
	}}
}

// Datetime is Python's datetime.datetime. A naive datetime keeps its wall
// clock in a UTC-located time.Time (so arithmetic is wall-clock arithmetic, as
// in Python); an aware one keeps its instant and fixed-offset zone.
type Datetime struct {
	t     time.Time
	aware bool
}

// Time returns the datetime as a time.Time; a naive datetime is read as local time.
func (d Datetime) Time() time.Time {
	if d.aware {
		return d.t
	}
	return time.Date(d.t.Year(), d.t.Month(), d.t.Day(), d.t.Hour(), d.t.Minute(), d.t.Second(), d.t.Nanosecond(), time.Local)
}

func naive(t time.Time) Datetime {
	return Datetime{t: time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1000*1000, time.UTC)}
}

func aware(t time.Time) Datetime { return Datetime{t: t.Truncate(time.Microsecond), aware: true} }

func (d Datetime) isoformat(sep string) string {
	t := d.t
	s := fmt.Sprintf("%04d-%02d-%02d%s%02d:%02d:%02d", t.Year(), int(t.Month()), t.Day(), sep, t.Hour(), t.Minute(), t.Second())
	if us := t.Nanosecond() / 1000; us != 0 {
		s += fmt.Sprintf(".%06d", us)
	}
	if d.aware {
		s += t.Format("-07:00")
	}
	return s
}

// String implements starlark.Value, as Python's str(datetime).
func (d Datetime) String() string { return d.isoformat(" ") }

// Type implements starlark.Value.
func (d Datetime) Type() string { return "datetime" }

// Freeze implements starlark.Value; datetimes are immutable.
func (d Datetime) Freeze() {}

// Truth implements starlark.Value.
func (d Datetime) Truth() starlark.Bool { return true }

// Hash implements starlark.Value.
func (d Datetime) Hash() (uint32, error) {
	n := uint64(d.t.UnixMicro())
	return uint32(n ^ n>>32), nil
}

// CompareSameType implements starlark.Comparable; naive and aware datetimes
// are never equal and cannot be ordered.
func (d Datetime) CompareSameType(op syntax.Token, y starlark.Value, _ int) (bool, error) {
	e := y.(Datetime)
	if d.aware != e.aware {
		if op == syntax.EQL || op == syntax.NEQ {
			return op == syntax.NEQ, nil
		}
		return false, fmt.Errorf("can't compare offset-naive and offset-aware datetimes")
	}
	return compareOrder(op, d.t.Compare(e.t))
}

// Binary implements starlark.HasBinary: datetime ± timedelta and datetime - datetime.
func (d Datetime) Binary(op syntax.Token, y starlark.Value, side starlark.Side) (starlark.Value, error) {
	switch y := y.(type) {
	case Timedelta:
		switch {
		case op == syntax.PLUS:
			return Datetime{t: d.t.Add(y.Duration), aware: d.aware}, nil
		case op == syntax.MINUS && side == starlark.Left:
			return Datetime{t: d.t.Add(-y.Duration), aware: d.aware}, nil
		}
	case Datetime:
		if op != syntax.MINUS {
			return nil, nil
		}
		if d.aware != y.aware {
			return nil, fmt.Errorf("can't subtract offset-naive and offset-aware datetimes")
		}
		a, b := d.t, y.t
		if side == starlark.Right {
			a, b = b, a
		}
		us := a.Sub(b) / time.Microsecond
		if a.Sub(b) == math.MaxInt64 || a.Sub(b) == math.MinInt64 {
			return nil, errTimedeltaRange
		}
		return Timedelta{us * time.Microsecond}, nil
	}
	return nil, nil
}

// Attr implements starlark.HasAttrs.
func (d Datetime) Attr(name string) (starlark.Value, error) {
	t := d.t
	switch name {
	case "year":
		return starlark.MakeInt(t.Year()), nil
	case "month":
		return starlark.MakeInt(int(t.Month())), nil
	case "day":
		return starlark.MakeInt(t.Day()), nil
	case "hour":
		return starlark.MakeInt(t.Hour()), nil
	case "minute":
		return starlark.MakeInt(t.Minute()), nil
	case "second":
		return starlark.MakeInt(t.Second()), nil
	case "microsecond":
		return starlark.MakeInt(t.Nanosecond() / 1000), nil
	case "tzinfo":
		if !d.aware {
			return starlark.None, nil
		}
		_, off := t.Zone()
		return tzinfo{offset: off}, nil
	}
	return methodAttr(d, "datetime", name, datetimeMethods), nil
}

// AttrNames implements starlark.HasAttrs.
func (d Datetime) AttrNames() []string {
	return methodNames(datetimeMethods, "year", "month", "day", "hour", "minute", "second", "microsecond", "tzinfo")
}

type datetimeMethod = func(Datetime, *starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

var datetimeMethods = map[string]datetimeMethod{
	"isoformat": func(d Datetime, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		sep := "T"
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "sep?", &sep); err != nil {
			return nil, err
		}
		return starlark.String(d.isoformat(sep)), nil
	},
	"timestamp": func(d Datetime, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		return starlark.Float(float64(d.Time().UnixMicro()) / usPerSecond), nil
	},
	"strftime": func(d Datetime, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var format string
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &format); err != nil {
			return nil, err
		}
		s, err := strftime(d.t, format, d.aware)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		return starlark.String(s), nil
	},
	"weekday": func(d Datetime, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		return starlark.MakeInt((int(d.t.Weekday()) + 6) % 7), nil
	},
}

// datetimeClass is the datetime.datetime type: callable as the constructor,
// with the class methods now, utcnow, fromtimestamp and fromisoformat.
type datetimeClass struct{}

func (datetimeClass) String() string        { return "<class 'datetime.datetime'>" }
func (datetimeClass) Type() string          { return "type" }
func (datetimeClass) Freeze()               {}
func (datetimeClass) Truth() starlark.Bool  { return true }
func (datetimeClass) Hash() (uint32, error) { return starlark.String("datetime.datetime").Hash() }
func (datetimeClass) Name() string          { return "datetime.datetime" }

// CallInternal implements starlark.Callable: datetime(year, month, day,
// hour=0, minute=0, second=0, microsecond=0, tzinfo=None).
func (c datetimeClass) CallInternal(_ *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var year, month, day, hour, minute, second, micro int
	var tz starlark.Value
	if err := starlark.UnpackArgs(c.Name(), args, kwargs, "year", &year, "month", &month, "day", &day,
		"hour?", &hour, "minute?", &minute, "second?", &second, "microsecond?", &micro, "tzinfo??", &tz); err != nil {
		return nil, err
	}
	loc, err := tzLocation(c.Name(), tz)
	if err != nil {
		return nil, err
	}
	t := time.Date(year, time.Month(month), day, hour, minute, second, micro*1000, time.UTC)
	switch {
	case year < 1 || year > 9999:
		err = fmt.Errorf("year %d is out of range", year)
	case month < 1 || month > 12:
		err = fmt.Errorf("month must be in 1..12, got %d", month)
	case t.Day() != day || day < 1:
		err = fmt.Errorf("day is out of range for month")
	case hour < 0 || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59:
		err = fmt.Errorf("time %d:%d:%d is out of range", hour, minute, second)
	case micro < 0 || micro > 999999:
		err = fmt.Errorf("microsecond must be in 0..999999, got %d", micro)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name(), err)
	}
	if loc == nil {
		return Datetime{t: t}, nil
	}
	return aware(time.Date(year, time.Month(month), day, hour, minute, second, micro*1000, loc)), nil
}

func tzLocation(fn string, tz starlark.Value) (*time.Location, error) {
	switch x := tz.(type) {
	case nil, starlark.NoneType:
		return nil, nil
	case tzinfo:
		return x.location(), nil
	}
	return nil, fmt.Errorf("%s: tzinfo must be a datetime.timezone or None, not %s", fn, tz.Type())
}

// Attr implements starlark.HasAttrs.
func (c datetimeClass) Attr(name string) (starlark.Value, error) {
	fn, ok := datetimeClassMethods[name]
	if !ok {
		return nil, nil
	}
	return starlark.NewBuiltin("datetime."+name, fn), nil
}

// AttrNames implements starlark.HasAttrs.
func (c datetimeClass) AttrNames() []string { return methodNames(datetimeClassMethods) }

var datetimeClassMethods = map[string]builtinFunc{
	"now": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var tz starlark.Value
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "tz??", &tz); err != nil {
			return nil, err
		}
		loc, err := tzLocation(b.Name(), tz)
		if err != nil {
			return nil, err
		}
		if loc == nil {
			return naive(time.Now()), nil
		}
		return aware(time.Now().In(loc)), nil
	},
	"utcnow": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		return naive(time.Now().UTC()), nil
	},
	"fromtimestamp": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var ts floatArg
		var tz starlark.Value
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "timestamp", &ts, "tz??", &tz); err != nil {
			return nil, err
		}
		loc, err := tzLocation(b.Name(), tz)
		if err != nil {
			return nil, err
		}
		t := time.UnixMicro(int64(math.Round(float64(ts) * usPerSecond)))
		if loc == nil {
			return naive(t), nil
		}
		return aware(t.In(loc)), nil
	},
	"fromisoformat": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var s string
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &s); err != nil {
			return nil, err
		}
		if len(s) > 10 && s[10] == ' ' {
			s = s[:10] + "T" + s[11:]
		}
		for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02T15", "2006-01-02"} {
			for _, zone := range []string{"Z07:00", "-0700", ""} {
				t, err := time.Parse(layout+zone, s)
				if err != nil {
					continue
				}
				if zone == "" {
					return naive(t), nil
				}
				_, off := t.Zone()
				return aware(t.In(tzinfo{offset: off}.location())), nil
			}
		}
		return nil, fmt.Errorf("%s: invalid isoformat string: %s", b.Name(), starlark.String(s))
	},
}

// tzinfo is a fixed-offset timezone (datetime.timezone.utc and
// datetime.timezone(timedelta)).
type tzinfo struct{ offset int }

func (z tzinfo) location() *time.Location {
	if z.offset == 0 {
		return time.UTC
	}
	return time.FixedZone(z.String(), z.offset)
}

// String implements starlark.Value, as Python's str(timezone).
func (z tzinfo) String() string {
	if z.offset == 0 {
		return "UTC"
	}
	sign, off := '+', z.offset
	if off < 0 {
		sign, off = '-', -off
	}
	return fmt.Sprintf("UTC%c%02d:%02d", sign, off/3600, off/60%60)
}

func (z tzinfo) Type() string          { return "timezone" }
func (z tzinfo) Freeze()               {}
func (z tzinfo) Truth() starlark.Bool  { return true }
func (z tzinfo) Hash() (uint32, error) { return uint32(z.offset), nil }

// CompareSameType implements starlark.Comparable.
func (z tzinfo) CompareSameType(op syntax.Token, y starlark.Value, _ int) (bool, error) {
	return compareEq(op, z.offset == y.(tzinfo).offset, "timezone")
}

// timezoneClass is datetime.timezone: timezone(timedelta) and timezone.utc.
type timezoneClass struct{}

func (timezoneClass) String() string        { return "<class 'datetime.timezone'>" }
func (timezoneClass) Type() string          { return "type" }
func (timezoneClass) Freeze()               {}
func (timezoneClass) Truth() starlark.Bool  { return true }
func (timezoneClass) Hash() (uint32, error) { return starlark.String("datetime.timezone").Hash() }
func (timezoneClass) Name() string          { return "datetime.timezone" }

// CallInternal implements starlark.Callable.
func (c timezoneClass) CallInternal(_ *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var off Timedelta
	if err := starlark.UnpackPositionalArgs(c.Name(), args, kwargs, 1, &off); err != nil {
		return nil, err
	}
	if off.Duration <= -24*time.Hour || off.Duration >= 24*time.Hour || off.Duration%time.Second != 0 {
		return nil, fmt.Errorf("%s: offset must be whole seconds strictly between -24h and 24h, got %s", c.Name(), off)
	}
	return tzinfo{offset: int(off.Duration / time.Second)}, nil
}

// Attr implements starlark.HasAttrs.
func (c timezoneClass) Attr(name string) (starlark.Value, error) {
	if name == "utc" {
		return tzinfo{}, nil
	}
	return nil, nil
}

// AttrNames implements starlark.HasAttrs.
func (c timezoneClass) AttrNames() []string { return []string{"utc"} }
