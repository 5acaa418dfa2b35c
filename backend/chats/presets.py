"""AI presets: a named model with its parameters, to start chats from."""


from backend.core.errors import NotFound
from backend.core.errors import field_error as _field
from backend.core.scoping import require_user as _require

from .models import AiPreset
from .params import clean_settings
from .codes import ChatErrorCode


# --- presets --------------------------------------------------------------------------------

def preset_fields(model, temperature, top_p, max_tokens, system_prompt) -> dict:
    clean = clean_settings(model, {"temperature": temperature, "top_p": top_p, "max_tokens": max_tokens,
                                   "system_prompt": system_prompt})
    return {"model": model, "temperature": clean.get("temperature", 0.7), "top_p": clean.get("top_p"),
            "max_tokens": clean.get("max_tokens", 1024), "system_prompt": clean.get("system_prompt", "")}


def create_preset(user, *, name: str, model: str, temperature=0.7, top_p=None, max_tokens=1024,
                  system_prompt="") -> AiPreset:
    _require(user)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise _field("name", "Between 1 and 100 characters.", ChatErrorCode.INVALID_LENGTH)
    if AiPreset.objects.filter(owner=user, name=name).exists():
        raise _field("name", "You already have a preset with this name.", ChatErrorCode.DUPLICATE)
    return AiPreset.objects.create(owner=user, name=name,
                                   **preset_fields(model, temperature, top_p, max_tokens, system_prompt))


def update_preset(user, pk, **changes) -> AiPreset:
    _require(user)
    preset = AiPreset.objects.visible_to(user).filter(pk=pk).first()
    if preset is None:
        raise NotFound("No such preset.")
    name = changes.pop("name", None)
    if name is not None:
        name = name.strip()
        if not name or len(name) > 100:
            raise _field("name", "Between 1 and 100 characters.", ChatErrorCode.INVALID_LENGTH)
        if AiPreset.objects.filter(owner=user, name=name).exclude(pk=preset.pk).exists():
            raise _field("name", "You already have a preset with this name.", ChatErrorCode.DUPLICATE)
        preset.name = name
    current = {"model": preset.model, "temperature": preset.temperature, "top_p": preset.top_p,
               "max_tokens": preset.max_tokens, "system_prompt": preset.system_prompt}
    current.update({k: v for k, v in changes.items() if v is not None})
    for key, value in preset_fields(**current).items():
        setattr(preset, key, value)
    preset.save()
    return preset


def delete_preset(user, pk) -> None:
    _require(user)
    if not AiPreset.objects.visible_to(user).filter(pk=pk).delete()[0]:
        raise NotFound("No such preset.")
