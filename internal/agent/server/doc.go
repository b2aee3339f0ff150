// Package server is the Opensbx agent's side of the protocol in package
// wire: it runs commands (each in a session of its own, output kept in
// bounded rings), signals exactly one command's process tree, and reads and
// writes files, all inside the sandbox. The opensbx-agent program serves it
// on an abstract unix socket; tests serve it in-process over a pipe.
//
// It is Linux only.
package server
