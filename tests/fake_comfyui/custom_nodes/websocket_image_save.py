# Stands in for the websocket_image_save.py that ships in ComfyUI's custom_nodes/ (it defines
# SaveImageWebsocket). The fake imports nothing from custom_nodes: this file being here makes it
# register its own SaveImageWebsocket and list the file under "Import times for custom nodes".
