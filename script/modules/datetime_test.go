package modules

import (
	"math"
	"math/big"
	"testing"
	"time"

	"go.starlark.net/starlark"
)

// TestTimedelta's expected values are CPython's for the same expressions.
func TestTimedelta(t *testing.T) {
	runSnippets(t, []snippet{
		{"constructor and attributes", `datetime = import_("datetime")
td = datetime.timedelta(days=1, hours=2, minutes=3, seconds=4.5)
res = [str(td), td.days, td.seconds, td.microseconds, td.total_seconds()]`,
			`["1 day, 2:03:04.500000", 1, 7384, 500000, 93784.5]`, ""},
		{"negative normalization", `timedelta = import_("datetime", "timedelta")
n = timedelta(seconds=-1)
res = [str(n), n.days, n.seconds, n.microseconds, str(timedelta(hours=-25.5))]`,
			`["-1 day, 23:59:59", -1, 86399, 0, "-2 days, 22:30:00"]`, ""},
		{"arithmetic", `timedelta = import_("datetime", "timedelta")
a, b = timedelta(minutes=1), timedelta(seconds=25)
res = [str(a+b), str(a-b), str(b-a), str(-a), str(a*2), str(2*a), str(a*1.5), str(a/4), a/b, a//b, str(a%b), a < b,
       a == timedelta(seconds=60), bool(timedelta()), str(a/0.5), str(timedelta(seconds=7)//2), str(-timedelta(seconds=7)//2)]`,
			`["0:01:25", "0:00:35", "-1 day, 23:59:25", "-1 day, 23:59:00", "0:02:00", "0:02:00", "0:01:30", "0:00:15", 2.4, 2, "0:00:10", False, True, False, "0:02:00", "0:00:03.500000", "-1 day, 23:59:56.500000"]`, ""},
		{"floor division signs", `timedelta = import_("datetime", "timedelta")
res = [str(-timedelta(seconds=7) % timedelta(seconds=3)), str(timedelta(seconds=7) % timedelta(seconds=-3)), timedelta(seconds=-7)//timedelta(seconds=3),
       timedelta(seconds=7)//timedelta(seconds=-3), str(timedelta(microseconds=7)//-2), str(timedelta(microseconds=-7)//2), str(timedelta(microseconds=6)//-2)]`,
			`["0:00:02", "-1 day, 23:59:58", -3, -3, "-1 day, 23:59:59.999996", "-1 day, 23:59:59.999996", "-1 day, 23:59:59.999997"]`, ""},
		{"rounding", `timedelta = import_("datetime", "timedelta")
res = [str(timedelta(weeks=2, milliseconds=1)), timedelta(microseconds=0.5).microseconds, timedelta(microseconds=1.5).microseconds,
       timedelta(microseconds=2.5).microseconds, str(timedelta(seconds=1)/3), str(timedelta(1, 2, 3, 4, 5, 6, 7))]`,
			`["14 days, 0:00:00.001000", 0, 2, 2, "0:00:00.333333", "50 days, 6:05:02.004003"]`, ""},
		{"sorting and hashing", `timedelta = import_("datetime", "timedelta")
res = [str(x) for x in sorted([timedelta(hours=1), timedelta(seconds=5), -timedelta(1)])] 
d = {timedelta(seconds=60): 1}
d[timedelta(minutes=1)] = 2
res.append(d)`,
			`["-1 day, 0:00:00", "0:00:05", "1:00:00", {0:01:00: 2}]`, ""},
		{"bool argument", `timedelta = import_("datetime", "timedelta")
res = timedelta(seconds=True)`, "", "datetime.timedelta: for parameter seconds: got bool, want int or float"},
		{"string argument", `timedelta = import_("datetime", "timedelta")
res = timedelta("1")`, "", "for parameter days: got string, want int or float"},
		{"out of range", `timedelta = import_("datetime", "timedelta")
res = timedelta(days=200000)`, "", "datetime.timedelta: timedelta out of range"},
		{"overflow by multiplication", `timedelta = import_("datetime", "timedelta")
res = timedelta(days=100000) * 2`, "", "timedelta out of range"},
		{"division by zero", `timedelta = import_("datetime", "timedelta")
res = timedelta(1) / 0`, "", "timedelta division by zero"},
		{"unsupported operand", `timedelta = import_("datetime", "timedelta")
res = timedelta(1) + 1`, "", "unknown binary op: timedelta + int"},
	}, nil)
}

func TestDatetime(t *testing.T) {
	runSnippets(t, []snippet{
		{"naive", `datetime = import_("datetime")
d = datetime.datetime(2024, 1, 2, 3, 4, 5, 6)
res = [str(d), d.isoformat(), str(d + datetime.timedelta(days=30)), str(datetime.datetime(2024, 3, 1) - d),
       d.strftime("%Y/%m/%d %H:%M:%S %j %a %b %f %%"), [d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond, d.weekday()],
       d < d + datetime.timedelta(microseconds=1), d.tzinfo]`,
			`["2024-01-02 03:04:05.000006", "2024-01-02T03:04:05.000006", "2024-02-01 03:04:05.000006", "58 days, 20:55:54.999994", "2024/01/02 03:04:05 002 Tue Jan 000006 %", [2024, 1, 2, 3, 4, 5, 6, 1], True, None]`, ""},
		{"aware", `dt = import_("datetime")
u = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
res = [u.isoformat(), int(u.timestamp()), str(dt.datetime.fromtimestamp(0, tz=dt.timezone.utc)), dt.datetime.fromisoformat("2024-01-02T03:04:05+01:00").isoformat(),
       str(u.tzinfo), str(dt.timezone(dt.timedelta(hours=-2))), u.strftime("%z %Z"), dt.datetime.fromisoformat("2024-01-02 03:04").isoformat()]`,
			`["2024-01-01T00:00:00+00:00", 1704067200, "1970-01-01 00:00:00+00:00", "2024-01-02T03:04:05+01:00", "UTC", "UTC-02:00", "+0000 UTC", "2024-01-02T03:04:00"]`, ""},
		{"now", `datetime = import_("datetime", "datetime")
timezone = import_("datetime", "timezone")
a = datetime.now()
b = datetime.now(timezone.utc)
res = [type(a), a.tzinfo, str(b.tzinfo), b.timestamp() > 1.7e9, (datetime.now() - a).total_seconds() >= 0]`,
			`["datetime", None, "UTC", True, True]`, ""},
		{"naive vs aware", `dt = import_("datetime")
res = dt.datetime.now() < dt.datetime.now(dt.timezone.utc)`, "", "can't compare offset-naive and offset-aware datetimes"},
		{"invalid day", `dt = import_("datetime")
res = dt.datetime(2024, 2, 30)`, "", "datetime.datetime: day is out of range for month"},
		{"invalid isoformat", `dt = import_("datetime")
res = dt.datetime.fromisoformat("yesterday")`, "", "datetime.fromisoformat: invalid isoformat string"},
	}, nil)
}

func TestAsDuration(t *testing.T) {
	huge := starlark.MakeBigInt(new(big.Int).Lsh(big.NewInt(1), 62))
	cases := []struct {
		v    starlark.Value
		want time.Duration
		ok   bool
	}{
		{starlark.MakeInt(5), 5 * time.Second, true},
		{starlark.MakeInt(0), 0, true},
		{starlark.MakeInt(-1), -time.Second, true},
		{starlark.Float(1.5), 1500 * time.Millisecond, true},
		{starlark.Float(0.1), 100 * time.Millisecond, true},
		{Timedelta{3 * time.Second}, 3 * time.Second, true},
		{Timedelta{-time.Microsecond}, -time.Microsecond, true},
		{starlark.True, 0, false},
		{starlark.False, 0, false},
		{starlark.String("5"), 0, false},
		{starlark.None, 0, false},
		{starlark.Float(math.NaN()), 0, false},
		{starlark.Float(math.Inf(1)), 0, false},
		{starlark.Float(1e12), 0, false},
		{huge, 0, false},
	}
	for _, c := range cases {
		got, ok := AsDuration(c.v)
		if got != c.want || ok != c.ok {
			t.Errorf("AsDuration(%s %s) = %v, %v; want %v, %v", c.v.Type(), c.v, got, ok, c.want, c.ok)
		}
	}
}

// TestTimedeltaGo checks the exported type from Go: what the runtime sees
// when a script passes timedelta values around.
func TestTimedeltaGo(t *testing.T) {
	m := newModules(t, Host{})
	globals, err := execScript(t, m, `timedelta = import_("datetime", "timedelta")
res = timedelta(minutes=2, milliseconds=5)`, nil)
	if err != nil {
		t.Fatal(err)
	}
	td, ok := globals["res"].(Timedelta)
	if !ok {
		t.Fatalf("res is %T, want Timedelta", globals["res"])
	}
	if want := 2*time.Minute + 5*time.Millisecond; td.Duration != want {
		t.Errorf("Duration = %v, want %v", td.Duration, want)
	}
}
