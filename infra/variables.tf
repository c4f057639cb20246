variable "name" {
  description = "Prefix of every resource name; also the DynamoDB table's name (PGFLEET_TABLE)."
  type        = string
  default     = "pgfleet"
}

variable "jwt_issuer" {
  description = "Issuer (iss) of the tokens the HTTP API accepts, e.g. https://cognito-idp.<region>.amazonaws.com/<pool-id>."
  type        = string
}

variable "jwt_audience" {
  description = "Audience (aud, or client id) the tokens must carry."
  type        = string
}

variable "jwks_url" {
  description = "JWKS URL of the issuer; empty means <jwt_issuer>/.well-known/jwks.json."
  type        = string
  default     = ""
}

variable "engine" {
  description = "Data-plane engine (PGFLEET_ENGINE). \"local\" runs only on a developer machine."
  type        = string
  default     = "rds"

  validation {
    condition     = contains(["rds"], var.engine)
    error_message = "In AWS the engine is \"rds\"."
  }
}

variable "tenant_plans" {
  description = "Rate-limit plan of each tenant not on the standard plan, e.g. \"acme=premium,ops=system\" (PGFLEET_TENANT_PLANS)."
  type        = string
  default     = ""
}

variable "api_throttle_rate" {
  description = "Stage throttling, requests per second over the whole API (the outer guard; per-user limits are the API's own)."
  type        = number
  default     = 200
}

variable "api_throttle_burst" {
  description = "Stage throttling, burst of requests over the whole API."
  type        = number
  default     = 400
}

variable "schedule_group_name" {
  description = "EventBridge Scheduler group holding pgfleet's schedules (PGFLEET_SCHEDULE_GROUP)."
  type        = string
  default     = "pgfleet"
}

variable "log_retention_days" {
  description = "Retention of the functions' CloudWatch logs."
  type        = number
  default     = 30
}

variable "lambda_package" {
  description = "Zip of functions/ with its dependencies installed for python3.13 on x86_64 (see README)."
  type        = string
}
