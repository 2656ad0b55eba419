package api

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Signature renders a method's parameters as Python shows them:
// "execute(command, check_return=True, check_output=True, timeout=900)".
func (m *Method) Signature() string {
	var parts []string
	kwOnly := false
	for _, p := range m.Params {
		switch {
		case p.Variadic:
			parts = append(parts, "*"+p.Name)
			kwOnly = true
			continue
		case p.KeywordOnly && !kwOnly:
			parts = append(parts, "*")
			kwOnly = true
		}
		if p.Required {
			parts = append(parts, p.Name)
		} else {
			parts = append(parts, p.Name+"="+PyLiteral(p.Default))
		}
	}
	return m.Name + "(" + strings.Join(parts, ", ") + ")"
}

// PyLiteral renders a default value as Python source.
func PyLiteral(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return strconv.Quote(x)
	case int:
		return strconv.Itoa(x)
	case time.Duration:
		return strconv.FormatFloat(x.Seconds(), 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// Markdown is the method reference (docs/api.md), generated from the
// tables.
func Markdown() string {
	var b strings.Builder
	b.WriteString("# Test-script API reference\n\n")
	b.WriteString("<!-- Generated from the tables in package api; do not edit. `go test ./api -update` rewrites it. -->\n\n")
	b.WriteString("What a NixOS-style test script sees, as vmdriver offers it. Durations are seconds (int or float) or a timedelta; ")
	b.WriteString("`None` as a timeout means the machine's own default. Regular expressions are Python's, translated to Go's RE2 ")
	b.WriteString("(backreferences and lookaround are refused with a message).\n\n")

	b.WriteString("## Globals\n\n")
	writeTable(&b, Globals)
	b.WriteString("\n| Value | Type | What it is |\n|---|---|---|\n")
	for _, v := range Values {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, v.Type, v.Doc)
	}
	b.WriteString("\nEvery machine is also a global under its name, with `-` and other characters Python does not allow turned into `_`.\n")

	b.WriteString("\n## Log\n\nFunctions of the `log` global; `attributes` is accepted and ignored.\n\n")
	writeTable(&b, LogFuncs)

	b.WriteString("\n## Machine attributes\n\n| Attribute | Type | What it holds |\n|---|---|---|\n")
	for _, a := range Attrs {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", a.Name, a.Type, a.Doc)
	}

	b.WriteString("\n## Machine methods\n\n")
	var supported, unsupported []Method
	for _, m := range Methods {
		if m.Unsupported != "" {
			unsupported = append(unsupported, m)
		} else {
			supported = append(supported, m)
		}
	}
	writeTable(&b, supported)
	b.WriteString("\n## Not supported yet\n\nThese NixOS driver methods exist in the API so that `check` names them; calling one is an error saying what is missing.\n\n")
	b.WriteString("| Method | Needs |\n|---|---|\n")
	for _, m := range unsupported {
		fmt.Fprintf(&b, "| `%s` | %s |\n", m.Signature(), m.Unsupported)
	}
	return b.String()
}

func writeTable(b *strings.Builder, ms []Method) {
	b.WriteString("| Call | Returns | What it does |\n|---|---|---|\n")
	for _, m := range ms {
		ret := m.Returns
		if ret == "" {
			ret = "None"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s |\n", m.Signature(), ret, strings.ReplaceAll(m.Doc, "|", `\|`))
	}
}
