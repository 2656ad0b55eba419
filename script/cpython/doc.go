// Package cpython runs NixOS test scripts in a real CPython 3 (3.9 or
// newer) with the same globals as the Starlark runtime (package script),
// every call served by vmdriver's engine over a private socket.
//
// The Python side is a small module embedded in this package
// (vmdriver_bridge.py) and written into the run's private directory when
// a run starts. It receives the API table (package api) in its first
// message and makes real Python functions from it: a Machine class
// scripts can subclass, the globals, `log` and `t`. Each call goes to
// the engine as one JSON line and is decoded by the table's parameter
// types, run by the table's Go call and converted back; functions of the
// script that a call takes (retry's fn, a QMP event filter, polling
// conditions) are called back over the same connection while the call
// is in progress, so calls and callbacks nest like one call stack on
// both sides.
//
// Subtests, log blocks and polling conditions are driven from Python but
// logged by the engine, so a script logs the same tree, writes the same
// JUnit report and ends with the same errors (*script.ScriptError, with
// the script's own positions) as on Starlark. The interpreter runs in a
// process group of its own that dies with vmdriver; it is ended when the
// run ends however it ends, and a run whose interpreter dies reports its
// last lines of stderr.
package cpython
