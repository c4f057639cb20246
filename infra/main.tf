# pgfleet control plane on AWS: the same resources as ../template.yaml (SAM), checked by
# tests/unit/test_deployment.py. HTTP API (JWT authorizer) -> api function; SQS -> worker
# function; EventBridge Scheduler -> scheduled function; DynamoDB tables for metadata and
# history.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  region    = data.aws_region.current.name

  functions = {
    api       = { handler = "pgfleet.handlers.api.lambda_handler", timeout = 29 }       # HTTP API integrations time out at 30 s
    worker    = { handler = "pgfleet.handlers.worker.lambda_handler", timeout = 100 }   # below the queue's visibility timeout
    scheduled = { handler = "pgfleet.handlers.scheduled.lambda_handler", timeout = 55 } # reconcile runs every minute
    events    = { handler = "pgfleet.handlers.events.lambda_handler", timeout = 10 }    # the WebSocket API's routes
  }
  # Built from names, not referenced: the functions' environment names the scheduled function.
  function_arns = {
    for key in keys(local.functions) : key => "arn:${local.partition}:lambda:${local.region}:${local.account}:function:${var.name}-${key}"
  }

  # QUEUE_VISIBILITY_TIMEOUT and MAX_RECEIVES of functions/pgfleet/adapters/bootstrap.py.
  queue_visibility_timeout = 120
  max_receives             = 5

  # auth.PUBLIC_PATHS: answered without a token.
  public_routes = ["GET /api/health", "GET /api/version", "GET /api/v1/openapi.json", "GET /api/v1/docs"]

  # platform_schedules() of functions/pgfleet/handlers/domains.py (the domain manifests):
  # name => expression and the Input scheduled_event_input() of
  # functions/pgfleet/adapters/scheduler.py builds, verbatim (jsonencode would escape the
  # <...> context attributes Scheduler fills in).
  platform_schedules = {
    "pgfleet-reconcile"            = { expression = "rate(1 minute)", input = "{\"version\": \"0\", \"id\": \"<aws.scheduler.execution-id>\", \"detail-type\": \"Scheduled Event\", \"source\": \"aws.scheduler\", \"time\": \"<aws.scheduler.scheduled-time>\", \"resources\": [\"pgfleet-reconcile\"], \"detail\": {\"task\": \"reconcile\"}}" }
    "pgfleet-quotas"               = { expression = "rate(1 minute)", input = "{\"version\": \"0\", \"id\": \"<aws.scheduler.execution-id>\", \"detail-type\": \"Scheduled Event\", \"source\": \"aws.scheduler\", \"time\": \"<aws.scheduler.scheduled-time>\", \"resources\": [\"pgfleet-quotas\"], \"detail\": {\"task\": \"quotas\"}}" }
    "pgfleet-locks-capture"        = { expression = "rate(1 minute)", input = "{\"version\": \"0\", \"id\": \"<aws.scheduler.execution-id>\", \"detail-type\": \"Scheduled Event\", \"source\": \"aws.scheduler\", \"time\": \"<aws.scheduler.scheduled-time>\", \"resources\": [\"pgfleet-locks-capture\"], \"detail\": {\"task\": \"locks\"}}" }
    "pgfleet-monitoring-capture"   = { expression = "rate(1 minute)", input = "{\"version\": \"0\", \"id\": \"<aws.scheduler.execution-id>\", \"detail-type\": \"Scheduled Event\", \"source\": \"aws.scheduler\", \"time\": \"<aws.scheduler.scheduled-time>\", \"resources\": [\"pgfleet-monitoring-capture\"], \"detail\": {\"task\": \"monitoring\"}}" }
    "pgfleet-performance-snapshot" = { expression = "rate(5 minutes)", input = "{\"version\": \"0\", \"id\": \"<aws.scheduler.execution-id>\", \"detail-type\": \"Scheduled Event\", \"source\": \"aws.scheduler\", \"time\": \"<aws.scheduler.scheduled-time>\", \"resources\": [\"pgfleet-performance-snapshot\"], \"detail\": {\"task\": \"performance_snapshot\"}}" }
    "pgfleet-backup-expiry"        = { expression = "rate(1 hour)", input = "{\"version\": \"0\", \"id\": \"<aws.scheduler.execution-id>\", \"detail-type\": \"Scheduled Event\", \"source\": \"aws.scheduler\", \"time\": \"<aws.scheduler.scheduled-time>\", \"resources\": [\"pgfleet-backup-expiry\"], \"detail\": {\"task\": \"backup\", \"action\": \"expire\"}}" }
    "pgfleet-history-expiry"       = { expression = "rate(1 hour)", input = "{\"version\": \"0\", \"id\": \"<aws.scheduler.execution-id>\", \"detail-type\": \"Scheduled Event\", \"source\": \"aws.scheduler\", \"time\": \"<aws.scheduler.scheduled-time>\", \"resources\": [\"pgfleet-history-expiry\"], \"detail\": {\"task\": \"history_expiry\"}}" }
    "pgfleet-capacity-capture"     = { expression = "rate(1 hour)", input = "{\"version\": \"0\", \"id\": \"<aws.scheduler.execution-id>\", \"detail-type\": \"Scheduled Event\", \"source\": \"aws.scheduler\", \"time\": \"<aws.scheduler.scheduled-time>\", \"resources\": [\"pgfleet-capacity-capture\"], \"detail\": {\"task\": \"capacity.capture\"}}" }
    "pgfleet-compliance-monthly"   = { expression = "cron(0 2 1 * ? *)", input = "{\"version\": \"0\", \"id\": \"<aws.scheduler.execution-id>\", \"detail-type\": \"Scheduled Event\", \"source\": \"aws.scheduler\", \"time\": \"<aws.scheduler.scheduled-time>\", \"resources\": [\"pgfleet-compliance-monthly\"], \"detail\": {\"task\": \"compliance.monthly\"}}" }
    "pgfleet-security-threats"     = { expression = "rate(1 minute)", input = "{\"version\": \"0\", \"id\": \"<aws.scheduler.execution-id>\", \"detail-type\": \"Scheduled Event\", \"source\": \"aws.scheduler\", \"time\": \"<aws.scheduler.scheduled-time>\", \"resources\": [\"pgfleet-security-threats\"], \"detail\": {\"task\": \"security.threats\"}}" }
  }

  # What functions/pgfleet/core/settings.py reads.
  environment = {
    PGFLEET_HOME                   = "/tmp/pgfleet"
    PGFLEET_TABLE                  = aws_dynamodb_table.metadata.name
    PGFLEET_HISTORY_TABLE          = aws_dynamodb_table.history.name
    PGFLEET_QUEUE                  = aws_sqs_queue.operations.name
    PGFLEET_SCHEDULE_GROUP         = aws_scheduler_schedule_group.pgfleet.name
    PGFLEET_ENGINE                 = var.engine
    PGFLEET_AUTH_MODE              = "jwks"
    PGFLEET_JWT_ISSUER             = var.jwt_issuer
    PGFLEET_JWT_AUDIENCE           = var.jwt_audience
    PGFLEET_JWKS_URL               = var.jwks_url != "" ? var.jwks_url : "${var.jwt_issuer}/.well-known/jwks.json"
    PGFLEET_SCHEDULED_FUNCTION_ARN = local.function_arns["scheduled"]
    PGFLEET_SCHEDULER_ROLE_ARN     = aws_iam_role.scheduler.arn
    # Real-time events: the management API of the WebSocket API pushes to subscribers.
    # The CA the servers' certificates chain to (URIs use sslmode=verify-full); empty: the engine's default.
    PGFLEET_TLS_ROOT_CERT   = ""
    PGFLEET_TLS_MAJORS      = "" # the majors whose URIs demand verify-full (auto: those the engine runs with TLS)
    PGFLEET_EVENTS_ENDPOINT = "${replace(aws_apigatewayv2_api.events.api_endpoint, "wss://", "https://")}/live"
    # Admission (core/admission.py): what one tenant may hold; headroom a request leaves on a shared host.
    PGFLEET_TENANT_MAX_INSTANCES    = "10"
    PGFLEET_TENANT_MAX_NODES        = "20"
    PGFLEET_TENANT_MAX_MEMORY_MB    = "16384"
    PGFLEET_TENANT_MAX_CPU          = "16"
    PGFLEET_TENANT_MAX_STORAGE_GB   = "500"
    PGFLEET_HOST_MEMORY_HEADROOM_MB = "1024"
    PGFLEET_HOST_DISK_HEADROOM_GB   = "5"
    # A transitional resource no operation works on for this long is marked failed by reconcile.
    PGFLEET_STRANDED_AFTER_SECONDS = "120"
    # A cluster node further behind its primary (bytes of WAL) is refused promotion (409).
    PGFLEET_PROMOTE_MAX_LAG_BYTES = "1048576"
    # The API platform (core/rate_limits.py, core/audit.py): counters, plans, retention, EMF.
    PGFLEET_RATE_LIMIT_TABLE           = aws_dynamodb_table.rate_limits.name
    PGFLEET_TENANT_PLANS               = var.tenant_plans
    PGFLEET_RATE_LIMITS                = "" # the seed's: standard 1000/h, premium 5000/h, system 10000/h; 100/min burst
    PGFLEET_AUDIT_RETENTION_DAYS       = "365"
    PGFLEET_API_METRICS_RETENTION_DAYS = "30"
    PGFLEET_API_MIDDLEWARE             = "on"
    PGFLEET_EMF_METRICS                = "on"
    # Threat detection (domains/security): blocking a brute force's source by itself is off.
    PGFLEET_THREAT_AUTO_MITIGATION    = "off"
    PGFLEET_THREAT_MITIGATION_SECONDS = "900"
    PGFLEET_THREAT_AUTO_INCIDENT      = "HIGH"
    # Compliance reports, evidence packages and attested evidence (ports/object_store.py).
    PGFLEET_REPORTS_BUCKET = aws_s3_bucket.reports.bucket
  }

  # Each function gets only what its code calls.
  secrets_arn = "arn:${local.partition}:secretsmanager:${local.region}:${local.account}:secret:pgfleet/*"
  table_statement = {
    Effect   = "Allow"
    Action   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"]
    Resource = [aws_dynamodb_table.metadata.arn, "${aws_dynamodb_table.metadata.arn}/index/*"]
  }
  # history: append captures and events, query ranges, sweep expired
  history_statement = {
    Effect   = "Allow"
    Action   = ["dynamodb:BatchWriteItem", "dynamodb:Query"]
    Resource = [aws_dynamodb_table.history.arn, "${aws_dynamodb_table.history.arn}/index/*"]
  }
  # real-time events: push to the WebSocket subscribers, close expired ones
  push_statement = {
    Effect   = "Allow"
    Action   = ["execute-api:ManageConnections"]
    Resource = "${aws_apigatewayv2_api.events.execution_arn}/live/*/@connections/*"
  }
  # one-time and recurring schedules (mitigation lifts, maintenance windows, backup schedules,
  # restarts) in the group; a schedule runs as the scheduler's role: handing it over is iam:PassRole
  schedule_statements = [
    { Effect = "Allow", Action = ["scheduler:CreateSchedule", "scheduler:UpdateSchedule", "scheduler:DeleteSchedule", "scheduler:GetSchedule"], Resource = "arn:${local.partition}:scheduler:${local.region}:${local.account}:schedule/${aws_scheduler_schedule_group.pgfleet.name}/*" },
    { Effect = "Allow", Action = ["iam:PassRole"], Resource = aws_iam_role.scheduler.arn },
  ]
  # maintenance cleanup: sweep the rate-limit windows past their TTL
  sweep_statement = { Effect = "Allow", Action = ["dynamodb:Scan", "dynamodb:DeleteItem"], Resource = aws_dynamodb_table.rate_limits.arn }
  own_statements = {
    api = [
      local.push_statement,
      # rate limits: one atomic counter update per request
      { Effect = "Allow", Action = ["dynamodb:UpdateItem"], Resource = aws_dynamodb_table.rate_limits.arn },
      # send operations; its depth for /api/health/detailed and /api/metrics
      { Effect = "Allow", Action = ["sqs:GetQueueUrl", "sqs:SendMessage", "sqs:GetQueueAttributes"], Resource = aws_sqs_queue.operations.arn },
      local.schedule_statements[0],
      local.schedule_statements[1],
      # create an instance's password; read it back for an idempotent replay
      { Effect = "Allow", Action = ["secretsmanager:CreateSecret", "secretsmanager:PutSecretValue", "secretsmanager:GetSecretValue"], Resource = local.secrets_arn },
      # a notification channel's secrets go with the channel
      { Effect = "Allow", Action = ["secretsmanager:DeleteSecret"], Resource = "arn:${local.partition}:secretsmanager:${local.region}:${local.account}:secret:pgfleet/notifications/*" },
      # POST /api/v1/monitoring/notifications/test of an EMAIL channel with provider ses
      { Effect = "Allow", Action = ["ses:SendEmail"], Resource = "arn:${local.partition}:ses:${local.region}:${local.account}:identity/*" },
      # SMS channels: SNS Publish to a phone number, and to nothing else (every topic or endpoint ARN is excluded)
      { Effect = "Allow", Action = ["sns:Publish"], NotResource = "arn:${local.partition}:sns:*:*:*" },
      # compliance reports, evidence packages and attested evidence; their download links
      { Effect = "Allow", Action = ["s3:PutObject", "s3:GetObject"], Resource = "${aws_s3_bucket.reports.arn}/*" },
    ]
    worker = [
      local.push_statement,
      # the SQS event source polls with the function's role
      { Effect = "Allow", Action = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"], Resource = aws_sqs_queue.operations.arn },
      local.schedule_statements[0],
      local.schedule_statements[1],
      local.sweep_statement,
      # set the password on the server; remove it with the instance
      { Effect = "Allow", Action = ["secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret"], Resource = local.secrets_arn },
      # a notification delivery that failed is sent again, later (backoff)
      { Effect = "Allow", Action = ["sqs:GetQueueUrl", "sqs:SendMessage"], Resource = aws_sqs_queue.operations.arn },
      # notification deliveries to EMAIL channels with provider ses
      { Effect = "Allow", Action = ["ses:SendEmail"], Resource = "arn:${local.partition}:ses:${local.region}:${local.account}:identity/*" },
      # SMS channels: SNS Publish to a phone number, and to nothing else (every topic or endpoint ARN is excluded)
      { Effect = "Allow", Action = ["sns:Publish"], NotResource = "arn:${local.partition}:sns:*:*:*" },
      # compliance assessments store their evidence; periodic reports
      { Effect = "Allow", Action = ["s3:PutObject", "s3:GetObject"], Resource = "${aws_s3_bucket.reports.arn}/*" },
    ]
    scheduled = [
      local.push_statement,
      # reconcile re-enqueues operations that lost their worker
      { Effect = "Allow", Action = ["sqs:GetQueueUrl", "sqs:SendMessage"], Resource = aws_sqs_queue.operations.arn },
      local.schedule_statements[0],
      local.schedule_statements[1],
      local.sweep_statement,
      # alerts raised by the scheduled captures: EMAIL channels with provider ses, SMS channels
      { Effect = "Allow", Action = ["ses:SendEmail"], Resource = "arn:${local.partition}:ses:${local.region}:${local.account}:identity/*" },
      { Effect = "Allow", Action = ["sns:Publish"], NotResource = "arn:${local.partition}:sns:*:*:*" },
      # the monthly compliance reports
      { Effect = "Allow", Action = ["s3:PutObject", "s3:GetObject"], Resource = "${aws_s3_bucket.reports.arn}/*" },
    ]
    events = [] # the connections' subscription records only (the metadata table)
  }
}

# --- metadata, queue, schedules (what ensure_resources creates locally) -----------------

resource "aws_dynamodb_table" "metadata" {
  # Keys and indexes as TABLE_KEY_SCHEMA (functions/pgfleet/adapters/dynamodb.py).
  name                        = var.name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = true

  dynamic "attribute" {
    for_each = ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]
    content {
      name = attribute.value
      type = "S"
    }
  }

  global_secondary_index {
    name            = "by_kind"
    hash_key        = "gsi1pk"
    range_key       = "gsi1sk"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "by_parent"
    hash_key        = "gsi2pk"
    range_key       = "gsi2sk"
    projection_type = "ALL"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }
}

resource "aws_dynamodb_table" "history" {
  # Keys and indexes as HISTORY_TABLE_SCHEMA (functions/pgfleet/adapters/history.py).
  name                        = "${var.name}-history"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  range_key                   = "sk"
  deletion_protection_enabled = true # audit events are compliance evidence

  dynamic "attribute" {
    for_each = ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk", "gsi3pk"]
    content {
      name = attribute.value
      type = "S"
    }
  }

  attribute {
    name = "expires_at"
    type = "N"
  }

  global_secondary_index {
    name            = "by_tenant"
    hash_key        = "gsi1pk"
    range_key       = "gsi1sk"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "by_stream"
    hash_key        = "gsi2pk"
    range_key       = "gsi2sk"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "by_expiry"
    hash_key        = "gsi3pk"
    range_key       = "expires_at"
    projection_type = "KEYS_ONLY"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  server_side_encryption {
    enabled = true
  }
}

resource "aws_dynamodb_table" "rate_limits" {
  # As RATE_LIMIT_TABLE_SCHEMA (functions/pgfleet/adapters/rate_limits.py): one item per user
  # and hour, forgotten by TTL.
  name         = "${var.name}-rate-limits"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  server_side_encryption {
    enabled = true
  }
}

resource "aws_sqs_queue" "operations_dlq" {
  name                      = "${var.name}-operations-dlq"
  message_retention_seconds = 1209600
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "operations" {
  name                       = "${var.name}-operations"
  visibility_timeout_seconds = local.queue_visibility_timeout
  message_retention_seconds  = 345600
  sqs_managed_sse_enabled    = true
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.operations_dlq.arn
    maxReceiveCount     = local.max_receives
  })
}

# Compliance reports and evidence: kept (as records are), private, encrypted at rest.
resource "aws_s3_bucket" "reports" {
  bucket_prefix = "${var.name}-reports-"
}

resource "aws_s3_bucket_server_side_encryption_configuration" "reports" {
  bucket = aws_s3_bucket.reports.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "reports" {
  bucket                  = aws_s3_bucket.reports.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_scheduler_schedule_group" "pgfleet" {
  name = var.schedule_group_name
}

resource "aws_iam_role" "scheduler" {
  name        = "${var.name}-scheduler"
  description = "Assumed by EventBridge Scheduler to invoke the scheduled function."
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "scheduler.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account } }
    }]
  })
}

resource "aws_iam_role_policy" "scheduler" {
  name = "invoke-scheduled-function"
  role = aws_iam_role.scheduler.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "lambda:InvokeFunction", Resource = local.function_arns["scheduled"] }]
  })
}

resource "aws_scheduler_schedule" "platform" {
  # One per entry of local.platform_schedules.
  for_each                     = local.platform_schedules
  name                         = each.key
  group_name                   = aws_scheduler_schedule_group.pgfleet.name
  schedule_expression          = each.value.expression
  schedule_expression_timezone = "UTC"
  state                        = "ENABLED"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_lambda_function.function["scheduled"].arn
    role_arn = aws_iam_role.scheduler.arn
    input    = each.value.input
  }
}

# Deployments made before the schedules were one for_each keep their reconcile schedule.
moved {
  from = aws_scheduler_schedule.reconcile
  to   = aws_scheduler_schedule.platform["pgfleet-reconcile"]
}

# --- functions ------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "function" {
  for_each          = local.functions
  name              = "/aws/lambda/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days
}

resource "aws_iam_role" "function" {
  for_each = local.functions
  name     = "${var.name}-${each.key}"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "lambda.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions
  name     = "pgfleet-${each.key}"
  role     = aws_iam_role.function[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [{
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = "${aws_cloudwatch_log_group.function[each.key].arn}:*"
      }],
      each.key == "events" ? [local.table_statement] : [local.table_statement, local.history_statement],
      local.own_statements[each.key],
    )
  })
}

resource "aws_lambda_function" "function" {
  for_each         = local.functions
  function_name    = "${var.name}-${each.key}"
  role             = aws_iam_role.function[each.key].arn
  handler          = each.value.handler
  timeout          = each.value.timeout
  runtime          = "python3.13" # the code is Python 3.11; Lambda no longer creates python3.11 functions
  architectures    = ["x86_64"]
  memory_size      = 512
  filename         = var.lambda_package
  source_code_hash = filebase64sha256(var.lambda_package)

  environment {
    variables = local.environment
  }

  depends_on = [aws_cloudwatch_log_group.function, aws_iam_role_policy.function]
}

resource "aws_lambda_event_source_mapping" "worker" {
  event_source_arn        = aws_sqs_queue.operations.arn
  function_name           = aws_lambda_function.function["worker"].arn
  batch_size              = 5
  function_response_types = ["ReportBatchItemFailures"]
}

# --- HTTP API -------------------------------------------------------------------------

resource "aws_apigatewayv2_api" "http" {
  name          = var.name
  protocol_type = "HTTP"
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  api_id           = aws_apigatewayv2_api.http.id
  name             = "jwt"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer   = var.jwt_issuer
    audience = [var.jwt_audience]
  }
}

resource "aws_apigatewayv2_integration" "api" {
  api_id                 = aws_apigatewayv2_api.http.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_function.function["api"].invoke_arn
  payload_format_version = "2.0"
}

resource "aws_apigatewayv2_route" "protected" {
  api_id             = aws_apigatewayv2_api.http.id
  route_key          = "ANY /api/{proxy+}"
  target             = "integrations/${aws_apigatewayv2_integration.api.id}"
  authorization_type = "JWT"
  authorizer_id      = aws_apigatewayv2_authorizer.jwt.id
}

resource "aws_apigatewayv2_route" "public" {
  for_each           = toset(local.public_routes)
  api_id             = aws_apigatewayv2_api.http.id
  route_key          = each.value
  target             = "integrations/${aws_apigatewayv2_integration.api.id}"
  authorization_type = "NONE"
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.http.id
  name        = "$default"
  auto_deploy = true

  # The outer guard: API Gateway refuses (429) beyond this, before any Lambda runs.
  default_route_settings {
    throttling_rate_limit  = var.api_throttle_rate
    throttling_burst_limit = var.api_throttle_burst
  }
}

resource "aws_lambda_permission" "api" {
  statement_id  = "AllowHttpApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function["api"].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.http.execution_arn}/*/*"
}

# --- real-time events: the WebSocket API (pgfleet.handlers.events) ----------------------
# Subscribers connect with the HTTP API's JWT (header or ?token=, checked by the handler: a
# WebSocket API has no JWT authorizer); connections are records of the metadata table.

resource "aws_apigatewayv2_api" "events" {
  name                       = "${var.name}-events"
  protocol_type              = "WEBSOCKET"
  route_selection_expression = "$request.body.action"
}

resource "aws_apigatewayv2_integration" "events" {
  api_id           = aws_apigatewayv2_api.events.id
  integration_type = "AWS_PROXY"
  integration_uri  = aws_lambda_function.function["events"].invoke_arn
}

resource "aws_apigatewayv2_route" "events" {
  for_each           = toset(["$connect", "$disconnect", "$default"])
  api_id             = aws_apigatewayv2_api.events.id
  route_key          = each.value
  target             = "integrations/${aws_apigatewayv2_integration.events.id}"
  authorization_type = "NONE"
  # two-way: ping and subscribe are answered
  route_response_selection_expression = each.value == "$default" ? "$default" : null
}

resource "aws_apigatewayv2_route_response" "events_default" {
  api_id             = aws_apigatewayv2_api.events.id
  route_id           = aws_apigatewayv2_route.events["$default"].id
  route_response_key = "$default"
}

resource "aws_apigatewayv2_stage" "events" {
  api_id      = aws_apigatewayv2_api.events.id
  name        = "live"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit  = var.api_throttle_rate
    throttling_burst_limit = var.api_throttle_burst
  }
}

resource "aws_lambda_permission" "events" {
  statement_id  = "AllowWebSocketApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.function["events"].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.events.execution_arn}/*"
}
