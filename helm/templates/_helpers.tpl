{{/* Chart name, truncated to the 63 characters Kubernetes names allow. */}}
{{- define "rescore.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* release-chart, or fullnameOverride; suffixes like -headless/-proxy must still fit. */}}
{{- define "rescore.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rescore.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "rescore.name" . }}
{{- with .Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
{{- end }}

{{/* Selector labels; component tells the sidecar and proxy pods apart. */}}
{{- define "rescore.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rescore.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "rescore.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rescore.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rescore.image" -}}
{{- $flavor := ternary "gpu" "cpu" .Values.gpu.enabled }}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-%s" .Chart.AppVersion $flavor) .Values.image.tag) }}
{{- end }}

{{- define "rescore.proxyImage" -}}
{{- $repo := default .Values.image.repository .Values.proxy.image.repository }}
{{- printf "%s:%s" $repo (default (printf "%s-cpu" .Chart.AppVersion) .Values.proxy.image.tag) }}
{{- end }}

{{/* Grace period: explicit, or preStop + drain + 10 s; refuses one that would cut the drain short. */}}
{{- define "rescore.terminationGracePeriod" -}}
{{- $s := .Values.sidecar }}
{{- $needed := add $s.preStopSleepSeconds $s.drainSeconds }}
{{- $grace := $s.terminationGracePeriodSeconds | default (add $needed 10) }}
{{- if le (int $grace) (int $needed) }}
{{- fail (printf "sidecar.terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds + drainSeconds (%v)" $grace $needed) }}
{{- end }}
{{- $grace }}
{{- end }}

{{/* A named gRPC health probe; service "" is the whole server, rescore.v1.Reranker is readiness. */}}
{{- define "rescore.grpcProbe" -}}
grpc:
  port: {{ .port }}
  service: {{ .service | quote }}
periodSeconds: {{ .probe.periodSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
{{- end }}
