{{/* Names and labels */}}
{{- define "surveil.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "surveil.fullname" -}}
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

{{- define "surveil.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "surveil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The worker pods (Deployment, PDB, Service): the feed Job's pods do not match */}}
{{- define "surveil.workerSelector" -}}
app.kubernetes.io/name: {{ include "surveil.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "surveil.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "surveil.saslEnabled" -}}
{{- if hasPrefix "SASL" .Values.kafka.securityProtocol }}true{{ end }}
{{- end }}

{{/* Environment of the worker and the feed: settings from the ConfigMap, secrets by secretKeyRef */}}
{{- define "surveil.envFrom" -}}
- configMapRef:
    name: {{ include "surveil.fullname" . }}-settings
{{- end }}

{{/* The SASL password: worker and feed */}}
{{- define "surveil.saslEnv" -}}
{{- if include "surveil.saslEnabled" . }}
- name: SURVEIL_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.passwordSecret.name }}
      key: {{ .Values.kafka.sasl.passwordSecret.key }}
{{- end }}
{{- end }}

{{/* The checkpoints' HMAC key: the worker only (the feed writes no checkpoint) */}}
{{- define "surveil.checkpointEnv" -}}
{{- if .Values.checkpointKeySecret.name }}
- name: SURVEIL_CHECKPOINT_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.checkpointKeySecret.name }}
      key: {{ .Values.checkpointKeySecret.key }}
{{- end }}
{{- end }}

{{/* The console's session cookie key: the worker only */}}
{{- define "surveil.sessionKeyEnv" -}}
{{- if .Values.console.sessionKeySecret.name }}
- name: SURVEIL_CONSOLE_SESSION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.console.sessionKeySecret.name }}
      key: {{ .Values.console.sessionKeySecret.key }}
{{- end }}
{{- end }}

{{/* Volumes both pods mount: the Kafka CA certificate */}}
{{- define "surveil.caVolume" -}}
{{- if .Values.kafka.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.caSecret.name }}
    items:
      - key: {{ .Values.kafka.caSecret.key }}
        path: ca.crt
{{- end }}
{{- end }}

{{- define "surveil.caMount" -}}
{{- if .Values.kafka.caSecret.name }}
- name: kafka-ca
  mountPath: /etc/surveil/kafka-ca
  readOnly: true
{{- end }}
{{- end }}
