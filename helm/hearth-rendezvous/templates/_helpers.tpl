{{/* The release's full name. */}}
{{- define "hearth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "hearth.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select the rendezvous pods. */}}
{{- define "hearth.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: rendezvous
{{- end -}}

{{/* True when replicas share state: more than one replica, or autoscaling. */}}
{{- define "hearth.shared" -}}
{{- if or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled -}}true{{- end -}}
{{- end -}}

{{/* True when this chart deploys Redis itself. */}}
{{- define "hearth.redis" -}}
{{- if and (not .Values.redis.externalUrl) (or .Values.redis.enabled (include "hearth.shared" .)) -}}true{{- end -}}
{{- end -}}

{{/* The Redis URL replicas use, if any. */}}
{{- define "hearth.redisUrl" -}}
{{- if .Values.redis.externalUrl -}}
{{- .Values.redis.externalUrl -}}
{{- else if include "hearth.redis" . -}}
{{- printf "redis://%s-redis:6379" (include "hearth.fullname" .) -}}
{{- end -}}
{{- end -}}
