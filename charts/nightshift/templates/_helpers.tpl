{{/* Chart name, shortened to the 63 characters a label value allows. */}}
{{- define "nightshift.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, or the release name alone when it already holds the chart name. */}}
{{- define "nightshift.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "nightshift.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator's pods; never change them (Deployment selectors are immutable). */}}
{{- define "nightshift.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nightshift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The same as a label selector string. */}}
{{- define "nightshift.selector" -}}
{{- printf "app.kubernetes.io/name=%s,app.kubernetes.io/instance=%s,app.kubernetes.io/component=operator" (include "nightshift.name" .) .Release.Name }}
{{- end }}

{{/* Labels on every object of the release, but the component. */}}
{{- define "nightshift.releaseLabels" -}}
helm.sh/chart: {{ include "nightshift.chart" . }}
app.kubernetes.io/name: {{ include "nightshift.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nightshift
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the operator's objects. */}}
{{- define "nightshift.labels" -}}
{{ include "nightshift.releaseLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* metadata.annotations of every object, when there are any. */}}
{{- define "nightshift.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "nightshift.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nightshift.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository[:tag][@digest] from an image block; the tag defaults to the chart's appVersion. */}}
{{- define "nightshift.imageRef" -}}
{{- $image := index . 0 }}{{- $root := index . 1 }}
{{- $ref := printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- if $image.digest }}{{ $ref = printf "%s@%s" $ref $image.digest }}{{ end }}
{{- $ref }}
{{- end }}

{{- define "nightshift.runnerImage" -}}
{{ include "nightshift.imageRef" (list .Values.runner.image .) }}
{{- end }}

{{/* "low=a,high=b" from the priorityClasses map, in a stable order. */}}
{{- define "nightshift.priorityClasses" -}}
{{- $pairs := list }}
{{- range $priority := list "low" "normal" "high" "critical" }}
{{- with index $.Values.operator.priorityClasses $priority }}
{{- $pairs = append $pairs (printf "%s=%s" $priority .) }}
{{- end }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* Namespace of the `helm test` task: set, else the first watched one, else the release's. */}}
{{- define "nightshift.testNamespace" -}}
{{- .Values.tests.namespace | default (first .Values.watchNamespaces) | default .Release.Namespace }}
{{- end }}

{{/* Exactly what the operator does in a watched namespace; no Secrets, no wildcards. */}}
{{- define "nightshift.taskRules" -}}
# BackgroundTasks are read through list/watch caches; only their status is written (merge patch).
- apiGroups: ["nightshift.dev"]
  resources: ["backgroundtasks"]
  verbs: ["list", "watch"]
- apiGroups: ["nightshift.dev"]
  resources: ["backgroundtasks/status"]
  verbs: ["patch"]
# CronJobs are server-side applied; an apply that creates one needs create too.
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["list", "watch", "create", "patch"]
# Run Jobs: retries, trials and run-now are created; the run-accounting finalizer
# and the recorded mark are patched; recorded runs past the history limits are deleted.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Run pods: exit codes, termination messages, and CreateContainerConfigError for
# a missing Secret or ConfigMap (the operator never reads those itself).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
