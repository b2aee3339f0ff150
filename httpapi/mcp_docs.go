package httpapi

// The texts the MCP endpoint gives models: the server instructions, the two
// documentation resources and the sandbox_workflow prompt.

// mcpInstructions are sent in the MCP handshake.
const mcpInstructions = `Opensbx runs programs in isolated Docker containers called sandboxes.

Usual flow:
1. sandbox_create with an image that is present locally (image_list shows them; pull: true fetches a missing one). Keep the returned id.
2. Find the project directory with file_list before running project commands.
3. command_exec runs a program directly (no shell): command is the program, args its arguments, env an object such as {"NODE_ENV":"development"}, cwd the directory. Use "sh" with args ["-c", "..."] for pipes or redirections.
   - Short tasks: wait: true returns exit_code, stdout and stderr in one result.
   - Servers and long tasks: leave wait off, then read output with command_logs (pass back the cursor it returns) and check state with command_get.
4. file_read and file_write move file contents; binary data travels base64 with encoding "base64".
5. sandbox_delete when done. A sandbox is stopped when its timeout passes; sandbox_renew_expiration extends it.

The resources opensbx://docs/how-it-works and opensbx://docs/quickstart explain more.`

// mcpDoc is one documentation resource.
type mcpDoc struct {
	name, title, description, uri, text string
}

func mcpDocs() []mcpDoc {
	return []mcpDoc{
		{
			name:        "opensbx-how-it-works",
			title:       "Opensbx MCP: how it works",
			description: "What sandboxes, commands and files are, and the mistakes to avoid",
			uri:         "opensbx://docs/how-it-works",
			text:        docHowItWorks,
		},
		{
			name:        "opensbx-quickstart",
			title:       "Opensbx MCP: quickstart",
			description: "Tool calls for the common tasks, step by step",
			uri:         "opensbx://docs/quickstart",
			text:        docQuickstart,
		},
	}
}

const docHowItWorks = "# Opensbx MCP: how it works\n\n" +
	"## Sandboxes\n" +
	"A sandbox is a Docker container made from a local image by `sandbox_create`. " +
	"It runs a keep-alive process, not the image's app, unless `keep_image_command` is set: " +
	"creating a sandbox starts nothing of yours. It publishes the `ports` you list on host ports " +
	"(`sandbox_network_get`), and it is stopped when its `timeout` (seconds) passes; " +
	"`sandbox_renew_expiration` moves the deadline. Stopped sandboxes keep their files; " +
	"`sandbox_delete` removes everything. Every tool takes the sandbox's id, a unique prefix of it, or its name.\n\n" +
	"## Commands\n" +
	"`command_exec` starts one program inside a running sandbox. It is executed directly, not by a shell: " +
	"`command` is the program and `args` its arguments, so `&&`, pipes, `$VAR` and `*` mean nothing " +
	"unless you run `sh` with `[\"-c\", \"...\"]`. `env` is an object of extra variables.\n\n" +
	"- `wait: true` returns when the program has ended, with `exit_code`, `stdout` and `stderr` " +
	"(the newest 64 KiB of each). Use it for builds, tests and scripts that end.\n" +
	"- Without `wait` the result comes at once with the command's `id`; the program keeps running. " +
	"Use this for servers and watchers, then `command_logs` for output and `command_get` for the state " +
	"(`running`, `finished`, `killed`, `failed`).\n" +
	"- `command_logs` returns output after a `cursor` and the cursor to pass next; `done` says the " +
	"command has ended and nothing more will come.\n" +
	"- `command_kill` signals the command's process tree: 15 (SIGTERM) asks it to end, 9 (SIGKILL) forces it.\n\n" +
	"A program that does not exist is not a tool error: the command finishes with exit code 127.\n\n" +
	"## Files\n" +
	"Paths are absolute and literal. `file_write` creates missing directories and replaces the file; " +
	"`file_read` returns text as is and anything else base64-encoded with `encoding: \"base64\"`; " +
	"send binary data to `file_write` the same way. `file_list` shows a directory like `ls -la`.\n\n" +
	"## Errors\n" +
	"A failed call is a tool error whose text says what went wrong (\"sandbox ... not found\", " +
	"\"... is already running\", \"image ... not found locally: pull it first\"). Its `_meta` carries " +
	"the HTTP API's `code` and `status`.\n\n" +
	"## Frequent mistakes\n" +
	"- Running project commands in `/` instead of the project directory: find it with `file_list` and pass `cwd`.\n" +
	"- Passing `env` as a list: it is an object.\n" +
	"- Expecting `sandbox_create` to start the app.\n" +
	"- Waiting (`wait: true`) for a server that never exits.\n"

const docQuickstart = "# Opensbx MCP quickstart\n\n" +
	"## Run a project's tests\n" +
	"1. `sandbox_create` `{\"image\": \"node:24\", \"timeout\": 1800}`; keep `id`.\n" +
	"2. `file_list` `{\"sandbox_id\": id, \"path\": \"/\"}` and then likely folders, to find the project.\n" +
	"3. `command_exec` `{\"sandbox_id\": id, \"cwd\": \"/app\", \"command\": \"npm\", \"args\": [\"test\"], \"wait\": true}`; " +
	"read `exit_code`, `stdout`, `stderr`.\n\n" +
	"## Start a dev server\n" +
	"1. Create the sandbox with `\"ports\": [\"3000\"]`.\n" +
	"2. `command_exec` `{\"sandbox_id\": id, \"cwd\": \"/app\", \"command\": \"npm\", \"args\": [\"run\", \"dev\"]}` (no wait); keep the command `id`.\n" +
	"3. `command_logs` `{\"sandbox_id\": id, \"command_id\": cmd, \"wait\": 10}` until the server says it is ready; pass the returned `cursor` next time.\n" +
	"4. `sandbox_get` shows the `url` (when the server has a base domain) and `sandbox_network_get` the host port.\n\n" +
	"## Edit a file\n" +
	"1. `file_read` `{\"sandbox_id\": id, \"path\": \"/app/src/index.js\"}`.\n" +
	"2. `file_write` with the whole new content (binary: base64 with `\"encoding\": \"base64\"`).\n" +
	"3. Run the checks again with `command_exec`.\n\n" +
	"## Stop a command\n" +
	"`command_kill` `{\"sandbox_id\": id, \"command_id\": cmd, \"signal\": 15}`; `9` if it does not end.\n\n" +
	"## Clean up\n" +
	"`sandbox_delete` `{\"id\": id}`.\n"

// workflowPrompt is the sandbox_workflow prompt; the arguments are the goal
// and the sandbox id (or "<create_one_first>").
const workflowPrompt = `You are working in an Opensbx sandbox through MCP tools.

Goal: %s
Sandbox ID: %s

Steps:
1. Without a sandbox id, call sandbox_create with a suitable local image (image_list), the ports the goal needs and a timeout; keep the id it returns.
2. Check the sandbox with sandbox_get.
3. Find the working directory with file_list before running project commands, and pass it as cwd.
4. Run short tasks with command_exec and wait: true; start servers with command_exec without wait, then follow them with command_logs (passing its cursor back) and command_get.
5. Change files with file_read and file_write (binary data as base64 with encoding "base64").
6. Check the outcome in the command output, exit codes and, for a server, its url or host port (sandbox_network_get).
7. Delete the sandbox with sandbox_delete when the user no longer needs it.

Remember: command_exec does not use a shell (run "sh" with ["-c", "..."] for one), and env is an object such as {"NODE_ENV":"development"}.
`
