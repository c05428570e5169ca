-- Argo CD health check for klt-render.dev/TaskRecord (status written by klt-reconciler).
-- Succeeded -> Healthy; Failed -> Degraded, naming the failing task or evaluation (for an
-- evaluation its message names the failing objective); anything else -> Progressing.
-- Runs in Argo CD's sandbox (Lua 5.1, no string library): only `..`, tostring, ipairs.
local hs = {}
local function describe(t)
  local what = "task "
  if t.evaluation == true then
    what = "evaluation "
  end
  local s = what .. tostring(t.definition or "?") .. " (" .. tostring(t.phase or "?")
  if t.workload ~= nil and t.workload ~= "" then
    s = s .. ", workload " .. tostring(t.workload)
  end
  return s .. ") Job " .. tostring(t.job or "?")
end
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for klt-reconciler to record the tasks"
  return hs
end
local tasks = status.tasks or {}
local total, done, evals, evals_done, failed, first = 0, 0, 0, 0, 0, nil
for _, t in ipairs(tasks) do
  if t.evaluation == true then
    evals = evals + 1
    if t.state == "Succeeded" then
      evals_done = evals_done + 1
    end
  else
    total = total + 1
    if t.state == "Succeeded" then
      done = done + 1
    end
  end
  if t.state == "Failed" then
    failed = failed + 1
    if first == nil then
      first = t
    end
  end
end
local counts = tostring(done) .. " of " .. tostring(total) .. " task(s)"
if evals > 0 then
  counts = counts .. " and " .. tostring(evals_done) .. " of " .. tostring(evals) .. " evaluation(s)"
end
if status.phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = counts .. " succeeded"
elseif status.phase == "Failed" then
  hs.status = "Degraded"
  if first ~= nil then
    hs.message = describe(first) .. " failed"
    if first.message ~= nil and first.message ~= "" then
      hs.message = hs.message .. ": " .. tostring(first.message)
    end
    if failed > 1 then
      hs.message = hs.message .. " (and " .. tostring(failed - 1) .. " more failed)"
    end
  else
    hs.message = "A task failed"
  end
else
  hs.status = "Progressing"
  hs.message = tostring(status.phase) .. ": " .. counts .. " succeeded"
end
return hs
