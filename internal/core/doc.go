// Package core is the contract shared by every binary of the Agent Data
// Platform: the task a user submits (TaskSpec), the record a runtime produces
// (Trajectory), and the Redis stream names that connect them.
//
// JSON field names are part of the contract: users run `jq '.success'` on
// trajectory files and write tasks.jsonl by hand.
package core
