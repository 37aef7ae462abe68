variable "project" {
  description = "Google Cloud project id."
  type        = string
}

variable "region" {
  description = "Region of the buckets, the image repository, the Dataflow jobs and the scheduler job."
  type        = string
  default     = "us-central1"
}

variable "name_prefix" {
  description = "Prefix of every resource name; bucket names are <name_prefix>-<project>-{corpus,outputs,temp} (globally unique)."
  type        = string
  default     = "earmark"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}$", var.name_prefix))
    error_message = "name_prefix: 2-19 characters, lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "schedule" {
  description = "Cron schedule of the incremental label job (Cloud Scheduler syntax); default nightly at 02:00."
  type        = string
  default     = "0 2 * * *"
}

variable "paused" {
  description = "Create the scheduler job paused (e.g. until the model at model_path is trained)."
  type        = bool
  default     = false
}

variable "time_zone" {
  description = "Time zone of the schedule (tz database name)."
  type        = string
  default     = "Etc/UTC"
}

variable "model_path" {
  description = "gs:// model dir written by `earmark train --model-dir` that the nightly job labels with; empty: gs://<outputs bucket>/models/current."
  type        = string
  default     = ""
  validation {
    condition     = var.model_path == "" || startswith(var.model_path, "gs://")
    error_message = "model_path must be a gs:// path (workers read it from Cloud Storage)."
  }
}

variable "input_path" {
  description = "gs:// folder or glob the nightly job labels; empty: the whole corpus bucket."
  type        = string
  default     = ""
}

variable "output_path" {
  description = "gs:// folder of the nightly job's segments and ledger; empty: gs://<outputs bucket>/labels."
  type        = string
  default     = ""
}

variable "formats" {
  description = "Output formats of the nightly job (comma-separated, from csv,raven,audacity,jsonl)."
  type        = string
  default     = "csv,raven"
}

variable "machine_type" {
  description = "Dataflow worker machine type (4 vCPU, 16 GB: room for one ~1.1 GB model per SDK process)."
  type        = string
  default     = "n2-standard-4"
}

variable "max_workers" {
  description = "Upper bound of Dataflow autoscaling for the nightly job."
  type        = number
  default     = 10
}

variable "image_tag" {
  description = "Tag of the earmark-sdk and earmark-*-template images pushed by infra/cloudbuild.yaml."
  type        = string
  default     = "0.1.0"
}

variable "private_worker_ips" {
  description = "Give workers no public IP (they need no internet; the subnetwork then needs Private Google Access for Cloud Storage and Artifact Registry)."
  type        = bool
  default     = false
}

variable "subnetwork" {
  description = "Worker subnetwork (regions/REGION/subnetworks/NAME); empty: the default network."
  type        = string
  default     = ""
}

variable "temp_retention_days" {
  description = "Days after which objects under tmp/ and staging/ of the temp bucket are deleted."
  type        = number
  default     = 7
}
