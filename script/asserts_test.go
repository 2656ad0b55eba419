package script_test

import (
	"testing"
)

func TestAssertions(t *testing.T) {
	e := machines(t)
	e.mustRun(lines(
		`t.assertEqual([1, "a"], [1, "a"])`,
		`t.assertNotEqual(1, 2)`,
		`t.assertTrue("x")`,
		`t.assertFalse("")`,
		`t.assertIn("a", "cat")`,
		`t.assertIn(2, {2: 3})`,
		`t.assertNotIn("z", ["a"])`,
		`t.assertIsNone(None)`,
		`t.assertIsNotNone(0)`,
		`t.assertGreater(2, 1)`,
		`t.assertGreaterEqual(2, 2)`,
		`t.assertLess(1, 2)`,
		`t.assertLessEqual(2, 2)`,
		`t.assertRegex("hello world", "wor?ld")`,
		`t.assertCountEqual([1, 2, 2], [2, 1, 2])`,
		`t.assertEqual(first=1, second=1, msg="kw")`,
	))
	tests := []struct{ src, msg string }{
		{`t.assertEqual("a", "b")`, `'a' != 'b'`},
		{`t.assertEqual(1, 2, "numbers")`, `1 != 2 : numbers`},
		{`t.assertEqual({"k": [1, None, True]}, {})`, `{'k': [1, None, True]} != {}`},
		{`t.assertEqual("it's", 'say "x"')`, `"it's" != 'say "x"'`},
		{`t.assertEqual((1,), "a\nb")`, `(1,) != 'a\nb'`},
		{`t.assertNotEqual(1, 1)`, `1 == 1`},
		{`t.assertTrue(0)`, `0 is not true`},
		{`t.assertFalse("x")`, `'x' is not false`},
		{`t.assertIn("a", ["b"])`, `'a' not found in ['b']`},
		{`t.assertNotIn("a", "abc")`, `'a' unexpectedly found in 'abc'`},
		{`t.assertIsNone(1)`, `1 is not None`},
		{`t.assertIsNotNone(None)`, `unexpectedly None`},
		{`t.assertGreater(1, 2)`, `1 not greater than 2`},
		{`t.assertGreaterEqual(1, 2)`, `1 not greater than or equal to 2`},
		{`t.assertLess(2, 1)`, `2 not less than 1`},
		{`t.assertLessEqual(2, 1)`, `2 not less than or equal to 1`},
		{`t.assertRegex("hello", "^w")`, `Regex didn't match: '^w' not found in 'hello'`},
		{`t.assertCountEqual([1, 2, 2], [2, 1, 1])`, "Element counts were not equal:\nFirst has 1, Second has 2:  1\nFirst has 2, Second has 1:  2"},
		{`t.assertCountEqual(["a"], [])`, "Element counts were not equal:\nFirst has 1, Second has 0:  'a'"},
		{`t.fail("why")`, `why`},
		{`t.fail()`, `None`},
		{`t.assertEqual(1)`, `assertEqual: missing argument for second`},
		{`t.assertLess(1, "a")`, ``},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			e := machines(t)
			se := e.scriptErr(tt.src + "\n")
			if tt.msg != "" && se.Msg != tt.msg {
				t.Errorf("message = %q, want %q", se.Msg, tt.msg)
			}
		})
	}
}
