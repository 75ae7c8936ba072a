// The OpenAPI 3 description of the routes, written by hand; openapi_test checks that it parses
// and lists every route the router serves.
#include "api/routes.hpp"

namespace gpuq::api {

std::string_view OpenApiDocument() {
  static constexpr std::string_view kDocument = R"json({
  "openapi": "3.0.3",
  "info": {"title": "gpuq", "version": "0.1.0",
           "description": "A job queue for GPU work. Errors are {\"error\": code, \"detail\": text}."},
  "security": [{"bearer": []}, {"cookie": []}],
  "paths": {
    "/submit_task": {"post": {
      "summary": "Queue a task",
      "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubmitTask"}}}},
      "responses": {"200": {"$ref": "#/components/responses/Queued"}, "400": {"$ref": "#/components/responses/Error"},
                    "401": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"},
                    "422": {"$ref": "#/components/responses/Error"}}}},
    "/task/submit": {"post": {
      "summary": "Queue a task (the notes' alias: type, params; \"comfy\" means \"comfyui\")",
      "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TaskSubmit"}}}},
      "responses": {"200": {"$ref": "#/components/responses/Queued"}, "400": {"$ref": "#/components/responses/Error"},
                    "413": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}},
    "/task_status/{id}": {"get": {
      "summary": "A run (the notes' name)",
      "parameters": [{"$ref": "#/components/parameters/Id"}],
      "responses": {"200": {"$ref": "#/components/responses/Run"}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/runs": {"get": {
      "summary": "List runs, newest first",
      "parameters": [
        {"name": "status", "in": "query", "schema": {"$ref": "#/components/schemas/Status"}},
        {"name": "type", "in": "query", "schema": {"type": "string"}},
        {"name": "parent", "in": "query", "schema": {"type": "string", "format": "uuid"}},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
        {"name": "before", "in": "query", "description": "next_before of the previous page", "schema": {"type": "string"}}],
      "responses": {"200": {"$ref": "#/components/responses/RunPage"}, "422": {"$ref": "#/components/responses/Error"}}}},
    "/runs/{id}": {"get": {
      "summary": "A run",
      "parameters": [{"$ref": "#/components/parameters/Id"}],
      "responses": {"200": {"$ref": "#/components/responses/Run"}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/runs/{id}/children": {"get": {
      "summary": "Runs whose parent_run_id is this run",
      "parameters": [{"$ref": "#/components/parameters/Id"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
        {"name": "before", "in": "query", "schema": {"type": "string"}}],
      "responses": {"200": {"$ref": "#/components/responses/RunPage"}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/runs/{id}/cancel": {"post": {
      "summary": "Cancel a run (a processing one is stopped by its worker)",
      "parameters": [{"$ref": "#/components/parameters/Id"}],
      "responses": {"200": {"$ref": "#/components/responses/Run"}, "404": {"$ref": "#/components/responses/Error"},
                    "409": {"$ref": "#/components/responses/Error"}}}},
    "/runs/{id}/retry": {"post": {
      "summary": "Queue a failed or cancelled run again",
      "parameters": [{"$ref": "#/components/parameters/Id"}],
      "responses": {"200": {"$ref": "#/components/responses/Run"}, "404": {"$ref": "#/components/responses/Error"},
                    "409": {"$ref": "#/components/responses/Error"}}}},
    "/runs/{id}/logs": {"get": {
      "summary": "An attempt's log; with follow=1 a text/event-stream (one data event per line, then event: end with the final status)",
      "parameters": [{"$ref": "#/components/parameters/Id"},
        {"name": "attempt", "in": "query", "description": "default: the latest", "schema": {"type": "integer", "minimum": 1}},
        {"name": "follow", "in": "query", "schema": {"type": "string", "enum": ["0", "1"]}}],
      "responses": {"200": {"description": "the log",
                            "content": {"text/plain": {"schema": {"type": "string"}},
                                        "text/event-stream": {"schema": {"type": "string"}}}},
                    "404": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}},
    "/runs/{id}/files/{path}": {"get": {
      "summary": "A file in the run's directory",
      "parameters": [{"$ref": "#/components/parameters/Id"},
        {"name": "path", "in": "path", "required": true, "description": "relative to the run's directory; may contain /", "schema": {"type": "string"}}],
      "responses": {"200": {"description": "the file", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    "404": {"$ref": "#/components/responses/Error"},
                    "422": {"description": "path_outside_run_dir", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}}},
    "/task_types": {"get": {
      "summary": "The configured task types",
      "responses": {"200": {"description": "task types", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"task_types": {"type": "array", "items": {"$ref": "#/components/schemas/TaskType"}}}}}}}}}},
    "/gpu/status": {"get": {
      "summary": "VRAM, service states and GPU locks over every live agent (the notes' shape plus per-GPU detail)",
      "responses": {"200": {"description": "GPU status", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GpuStatus"}}}}}}},
    "/gpu/prepare-phase/{phase}": {"post": {
      "summary": "Stop the idle services a phase does not use and start those it does, on every agent; answers once settled",
      "parameters": [{"name": "phase", "in": "path", "required": true, "schema": {"type": "integer"}}],
      "responses": {"200": {"description": "phase prepared (success false when an agent failed)", "content": {"application/json": {"schema": {
                      "type": "object", "properties": {"success": {"type": "boolean"}, "phase": {"type": "integer"},
                      "started": {"$ref": "#/components/schemas/Names"}, "stopped": {"$ref": "#/components/schemas/Names"},
                      "kept_busy": {"$ref": "#/components/schemas/Names"}, "error": {"type": "string"}}}}}},
                    "400": {"description": "invalid_phase: not a configured phase", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}},
    "/gpu/service/{name}/start": {"post": {
      "summary": "Start a service (on the agent where it is resident, else one that can host it); answers once it is healthy",
      "parameters": [{"$ref": "#/components/parameters/Service"}],
      "responses": {"200": {"$ref": "#/components/responses/ServiceAction"}, "404": {"$ref": "#/components/responses/Error"},
                    "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}},
    "/gpu/service/{name}/stop": {"post": {
      "summary": "Stop a service wherever it is resident; a busy one only with force=true (its runs are requeued)",
      "parameters": [{"$ref": "#/components/parameters/Service"},
        {"name": "force", "in": "query", "schema": {"type": "boolean", "default": false}}],
      "responses": {"200": {"$ref": "#/components/responses/ServiceAction"}, "404": {"$ref": "#/components/responses/Error"},
                    "409": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"},
                    "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}},
    "/gpu/service/{name}/logs": {"get": {
      "summary": "The service's own output on one GPU (<data_dir>/services/<name>/gpu<N>.log); with follow=1 a text/event-stream, one data event per line",
      "parameters": [{"$ref": "#/components/parameters/Service"},
        {"name": "gpu", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
        {"name": "follow", "in": "query", "schema": {"type": "string", "enum": ["0", "1"]}}],
      "responses": {"200": {"description": "the log",
                            "content": {"text/plain": {"schema": {"type": "string"}},
                                        "text/event-stream": {"schema": {"type": "string"}}}},
                    "404": {"$ref": "#/components/responses/Error"}, "422": {"$ref": "#/components/responses/Error"}}}},
    "/gpu/release-all": {"post": {
      "summary": "Stop every idle GPU service on every agent (busy ones are kept and listed)",
      "responses": {"200": {"description": "released", "content": {"application/json": {"schema": {
                      "type": "object", "properties": {"success": {"type": "boolean"}, "message": {"type": "string"},
                      "stopped": {"$ref": "#/components/schemas/Names"}, "kept_busy": {"$ref": "#/components/schemas/Names"}}}}}},
                    "503": {"$ref": "#/components/responses/Error"}, "504": {"$ref": "#/components/responses/Error"}}}},
    "/gpu/lock/release": {"post": {
      "summary": "Force-release a GPU lock (gpu=host:index), or every GPU lock in view; use with caution",
      "parameters": [{"name": "gpu", "in": "query", "schema": {"type": "string", "example": "host-a:0"}}],
      "responses": {"200": {"description": "released: whether a lock was held", "content": {"application/json": {"schema": {
                      "type": "object", "properties": {"released": {"type": "boolean"}}}}}},
                    "422": {"$ref": "#/components/responses/Error"}}}},
    "/health": {"get": {
      "summary": "Liveness; open without a token",
      "security": [],
      "responses": {"200": {"description": "health", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}}}},
    "/openapi.json": {"get": {
      "summary": "This document",
      "responses": {"200": {"description": "OpenAPI 3 document", "content": {"application/json": {"schema": {"type": "object"}}}}}}}
  },
  "components": {
    "securitySchemes": {
      "bearer": {"type": "http", "scheme": "bearer"},
      "cookie": {"type": "apiKey", "in": "cookie", "name": "gpuq_token"}},
    "parameters": {
      "Id": {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}},
      "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 256}},
      "Service": {"name": "name", "in": "path", "required": true, "description": "a configured service", "schema": {"type": "string"}}},
    "responses": {
      "Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Queued": {"description": "queued (also for a repeated idempotency key)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Queued"}}}},
      "Run": {"description": "a run", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Run"}}}},
      "RunPage": {"description": "a page of runs", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RunPage"}}}},
      "ServiceAction": {"description": "done (success false when the agent failed; error says why)", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"success": {"type": "boolean"}, "service": {"type": "string"},
        "gpu": {"type": "integer", "nullable": true}, "requeued": {"type": "array", "items": {"type": "string"}},
        "error": {"type": "string"}}}}}}},
    "schemas": {
      "Error": {"type": "object", "required": ["error", "detail"], "properties": {
        "error": {"type": "string", "example": "invalid_argument"}, "detail": {"type": "string"}}},
      "Status": {"type": "string", "enum": ["waiting", "pending", "processing", "completed", "failed", "cancelled"]},
      "SubmitTask": {"type": "object", "required": ["task_type"], "properties": {
        "task_type": {"type": "string"}, "priority": {"type": "integer"},
        "payload": {"type": "object", "default": {}}, "timeout_s": {"type": "integer", "minimum": 1},
        "max_attempts": {"type": "integer", "minimum": 1}, "idempotency_key": {"type": "string"},
        "parent_run_id": {"type": "string", "format": "uuid"}}},
      "TaskSubmit": {"type": "object", "required": ["type"], "properties": {
        "type": {"type": "string"}, "params": {"type": "object"}, "priority": {"type": "integer"}}},
      "Queued": {"type": "object", "properties": {
        "status": {"type": "string", "enum": ["queued"]}, "task_id": {"type": "string", "format": "uuid"}}},
      "Run": {"type": "object", "properties": {
        "task_id": {"type": "string"}, "id": {"type": "string"}, "type": {"type": "string"},
        "priority": {"type": "integer"}, "status": {"$ref": "#/components/schemas/Status"},
        "payload": {"type": "object"}, "result": {"nullable": true}, "error": {"type": "string", "nullable": true},
        "parent_run_id": {"type": "string", "nullable": true}, "depends_on": {"type": "array", "items": {"type": "string"}},
        "attempts": {"type": "integer"}, "max_attempts": {"type": "integer"}, "timeout_s": {"type": "integer"},
        "progress": {"type": "object", "properties": {"fraction": {"type": "number", "nullable": true}, "message": {"type": "string"}}},
        "waiting_reason": {"type": "string", "nullable": true}, "worker": {"type": "string", "nullable": true},
        "gpu": {"type": "string", "nullable": true}, "created_at": {"type": "string", "format": "date-time"},
        "started_at": {"type": "string", "nullable": true}, "finished_at": {"type": "string", "nullable": true},
        "cancel_requested": {"type": "boolean"}, "log_path": {"type": "string", "nullable": true},
        "files": {"type": "array", "items": {"type": "string"}}}},
      "RunPage": {"type": "object", "properties": {
        "runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
        "next_before": {"type": "string", "nullable": true}}},
      "TaskType": {"type": "object", "properties": {
        "name": {"type": "string"}, "connector": {"type": "string"}, "service": {"type": "string", "nullable": true},
        "description": {"type": "string"}, "priority": {"type": "integer"}, "timeout_s": {"type": "integer"},
        "max_attempts": {"type": "integer"}, "available": {"type": "boolean"}}},
      "Health": {"type": "object", "properties": {
        "status": {"type": "string", "enum": ["healthy", "degraded"]}, "version": {"type": "string"},
        "store": {"type": "string"}, "store_ok": {"type": "boolean"}, "redis": {"type": "boolean"},
        "gpu": {"type": "object", "properties": {"ok": {"type": "boolean"}, "free_mb": {"type": "integer", "nullable": true}}}}},
      "Names": {"type": "array", "items": {"type": "string"}},
      "Lock": {"type": "object", "properties": {
        "holder": {"type": "string", "nullable": true}, "ttl": {"type": "integer", "description": "seconds left; -2 when free"},
        "token": {"type": "integer"}}},
      "GpuStatus": {"type": "object", "properties": {
        "vram": {"type": "object", "properties": {"total_mb": {"type": "integer"}, "used_mb": {"type": "integer"}, "free_mb": {"type": "integer"}}},
        "services": {"type": "object", "additionalProperties": {"type": "object", "properties": {
          "state": {"type": "string", "enum": ["unknown", "stopped", "starting", "ready", "busy", "stopping", "error"]}}}},
        "lock": {"$ref": "#/components/schemas/Lock"},
        "gpus": {"type": "array", "items": {"type": "object", "properties": {
          "host": {"type": "string"}, "index": {"type": "integer"}, "name": {"type": "string"},
          "total_mb": {"type": "integer"}, "used_mb": {"type": "integer"}, "free_mb": {"type": "integer"},
          "reserve_mb": {"type": "integer"}, "unknown_mb": {"type": "integer"},
          "services": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "state": {"type": "string"}, "vram_mb_declared": {"type": "integer"},
            "vram_mb_measured": {"type": "integer", "nullable": true}, "port": {"type": "integer"},
            "pid": {"type": "integer", "nullable": true}, "container": {"type": "string"},
            "active_runs": {"type": "integer"}, "error": {"type": "string"}}}},
          "lock": {"$ref": "#/components/schemas/Lock"}}}},
        "agents": {"type": "array", "items": {"type": "object", "properties": {
          "agent": {"type": "string"}, "backend": {"type": "string"}, "ok": {"type": "boolean"}, "error": {"type": "string"}}}}}}
    }
  }
})json";
  return kDocument;
}

}  // namespace gpuq::api
